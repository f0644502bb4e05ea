// All UI strings, Vietnamese first. t(key, vars) looks a string up in the current language.

const STRINGS = {
  vi: {
    'app.title': 'Khám bệnh từ xa',
    'lang.switch': 'English',
    'lang.switchLabel': 'Switch to English',
    'join.heading': 'Tham gia buổi khám từ xa',
    'join.intro': 'Nhập mã buổi khám và tên của bạn, rồi bấm “Tham gia”.',
    'join.room': 'Mã buổi khám',
    'join.roomHint': 'Ví dụ: consult-42',
    'join.name': 'Tên của bạn',
    'join.namePlaceholder': 'Ví dụ: Nguyễn Thị Hoa',
    'join.role': 'Bạn là',
    'join.submit': 'Tham gia',
    'join.invalidRoom': 'Mã buổi khám chỉ gồm chữ thường không dấu, chữ số và dấu gạch ngang (tối đa 64 ký tự).',
    'join.invalidName': 'Vui lòng nhập tên của bạn (tối đa 64 ký tự).',
    'role.specialist': 'Bác sĩ chuyên khoa',
    'role.clinic': 'Phòng khám',
    'role.patient': 'Bệnh nhân',
    'role.unknown': 'Người tham gia',
    'status.idle': 'Chưa kết nối',
    'status.connecting': 'Đang kết nối…',
    'status.media': 'Đang kết nối âm thanh và hình ảnh…',
    'status.connected': 'Đã kết nối',
    'status.reconnecting': 'Mất kết nối, đang thử lại…',
    'status.waiting': 'Đang chờ mở buổi khám…',
    'status.failed': 'Không thể kết nối',
    'status.left': 'Đã rời buổi khám',
    'call.you': 'Bạn',
    'call.alone': 'Chưa có ai khác trong buổi khám. Xin vui lòng chờ…',
    'call.room': 'Buổi khám: {room}',
    'btn.micOff': 'Tắt mic',
    'btn.micOn': 'Bật mic',
    'btn.camOff': 'Tắt camera',
    'btn.camOn': 'Bật camera',
    'btn.noMic': 'Không có mic',
    'btn.noCam': 'Không có camera',
    'btn.leave': 'Rời buổi khám',
    'btn.dataSaver': 'Tiết\u00a0kiệm dữ\u00a0liệu', // wraps as "Tiết kiệm / dữ liệu" on phones
    'btn.dataSaverOn': 'Đang bật',
    'btn.dataSaverOff': 'Đang tắt',
    'layer.q': 'Thấp',
    'layer.h': 'Vừa',
    'layer.f': 'Cao',
    'layer.title': 'Chất lượng hình ảnh đang nhận',
    'layer.prefix': 'Chất lượng hình ảnh: ',
    'paused.bandwidth': 'Video tạm dừng do mạng yếu — âm thanh vẫn tiếp tục',
    'paused.unavailable': 'Không có hình',
    'quality.good': 'Kết nối tốt',
    'quality.fair': 'Kết nối trung bình',
    'quality.poor': 'Kết nối yếu',
    'quality.poorNotice': 'Mạng của bạn đang yếu. Bật “Tiết kiệm dữ liệu” để cuộc gọi ổn định hơn (hình ảnh của người khác sẽ nhỏ hơn, âm thanh không đổi).',
    'quality.turnOnSaver': 'Bật tiết kiệm dữ liệu',
    'quality.dismiss': 'Để sau',
    'btn.rejoin': 'Tham gia lại',
    'btn.enableSound': 'Bấm vào đây để bật âm thanh',
    'badge.micOff': 'Mic đã tắt',
    'badge.camOff': 'Camera đã tắt',
    'left.heading': 'Bạn đã rời buổi khám',
    'left.body': 'Cảm ơn bạn. Nếu rời nhầm, hãy bấm “Tham gia lại”.',
    'failed.heading': 'Không thể tham gia buổi khám',
    'media.denied': 'Trình duyệt chưa được phép dùng camera và micro. Hãy bấm vào biểu tượng ổ khóa (hoặc biểu tượng camera) trên thanh địa chỉ, chọn “Cho phép” cho Camera và Micro, rồi tải lại trang. Trong lúc đó, bạn vẫn xem và nghe được những người khác.',
    'media.notFound': 'Không tìm thấy camera và micro trên thiết bị này. Bạn vẫn xem và nghe được những người khác.',
    'media.inUse': 'Camera hoặc micro đang được ứng dụng khác sử dụng. Hãy đóng ứng dụng đó rồi tải lại trang. Trong lúc đó, bạn vẫn xem và nghe được những người khác.',
    'media.unsupported': 'Trình duyệt này không cho dùng camera và micro (trang cần được mở bằng https). Bạn vẫn xem và nghe được những người khác.',
    'media.cameraFailed': 'Không dùng được camera, nhưng mọi người vẫn nghe được bạn. Để bật camera, hãy bấm vào biểu tượng ổ khóa trên thanh địa chỉ, cho phép Camera, rồi tải lại trang.',
    'media.micFailed': 'Không dùng được micro, nên mọi người chưa nghe được bạn. Hãy bấm vào biểu tượng ổ khóa trên thanh địa chỉ, cho phép Micro, rồi tải lại trang.',
    'error.unknown_room': 'Buổi khám chưa bắt đầu. Đang chờ phòng khám hoặc bác sĩ mở buổi khám…',
    'error.room_full': 'Buổi khám đã đủ 8 người, không thể vào thêm.',
    'error.invalid_message': 'Thông tin tham gia không hợp lệ. Hãy kiểm tra lại mã buổi khám và tên.',
    'error.bad_sdp': 'Không thiết lập được kết nối âm thanh và hình ảnh.',
    'error.bad_candidate': 'Có lỗi khi kết nối mạng cho âm thanh và hình ảnh.',
    'error.rate_limited': 'Có quá nhiều yêu cầu gửi tới máy chủ. Vui lòng chờ một chút.',
    'error.internal': 'Máy chủ gặp sự cố. Vui lòng thử lại sau ít phút.',
    'error.unsupported_version': 'Ứng dụng đã cũ. Vui lòng tải lại trang.',
    'error.server_unreachable': 'Không kết nối được tới máy chủ. Hãy kiểm tra mạng Internet rồi bấm “Tham gia lại”.',
    'error.connection_lost': 'Mất kết nối và không thể kết nối lại. Hãy kiểm tra mạng Internet rồi bấm “Tham gia lại”.',
    'error.generic': 'Đã có lỗi xảy ra ({code}).',
  },
  en: {
    'app.title': 'Remote consultation',
    'lang.switch': 'Tiếng Việt',
    'lang.switchLabel': 'Chuyển sang tiếng Việt',
    'join.heading': 'Join the remote consultation',
    'join.intro': 'Enter the consult code and your name, then press “Join”.',
    'join.room': 'Consult code',
    'join.roomHint': 'For example: consult-42',
    'join.name': 'Your name',
    'join.namePlaceholder': 'For example: Nguyen Thi Hoa',
    'join.role': 'You are',
    'join.submit': 'Join',
    'join.invalidRoom': 'The consult code may only contain lowercase letters, digits and hyphens (up to 64 characters).',
    'join.invalidName': 'Please enter your name (up to 64 characters).',
    'role.specialist': 'Specialist',
    'role.clinic': 'Clinic',
    'role.patient': 'Patient',
    'role.unknown': 'Participant',
    'status.idle': 'Not connected',
    'status.connecting': 'Connecting…',
    'status.media': 'Connecting audio and video…',
    'status.connected': 'Connected',
    'status.reconnecting': 'Connection lost, retrying…',
    'status.waiting': 'Waiting for the consult to open…',
    'status.failed': 'Could not connect',
    'status.left': 'Left the consult',
    'call.you': 'You',
    'call.alone': 'No one else has joined yet. Please wait…',
    'call.room': 'Consult: {room}',
    'btn.micOff': 'Mute mic',
    'btn.micOn': 'Unmute mic',
    'btn.camOff': 'Stop camera',
    'btn.camOn': 'Start camera',
    'btn.noMic': 'No mic',
    'btn.noCam': 'No camera',
    'btn.leave': 'Leave',
    'btn.dataSaver': 'Data saver',
    'btn.dataSaverOn': 'On',
    'btn.dataSaverOff': 'Off',
    'layer.q': 'Low',
    'layer.h': 'Medium',
    'layer.f': 'High',
    'layer.title': 'Quality of the video you receive',
    'layer.prefix': 'Video quality: ',
    'paused.bandwidth': 'Video paused: weak connection — audio continues',
    'paused.unavailable': 'No video',
    'quality.good': 'Good connection',
    'quality.fair': 'Fair connection',
    'quality.poor': 'Poor connection',
    'quality.poorNotice': 'Your connection is weak. Turn on “Data saver” to keep the call steady (the others’ video gets smaller; sound stays the same).',
    'quality.turnOnSaver': 'Turn on data saver',
    'quality.dismiss': 'Not now',
    'btn.rejoin': 'Rejoin',
    'btn.enableSound': 'Tap here to turn on the sound',
    'badge.micOff': 'Mic off',
    'badge.camOff': 'Camera off',
    'left.heading': 'You left the consult',
    'left.body': 'Thank you. If you left by mistake, press “Rejoin”.',
    'failed.heading': 'Could not join the consult',
    'media.denied': 'The browser is not allowed to use your camera and microphone. Click the lock icon (or the camera icon) in the address bar, choose “Allow” for Camera and Microphone, then reload the page. Meanwhile you can still see and hear the others.',
    'media.notFound': 'No camera or microphone was found on this device. You can still see and hear the others.',
    'media.inUse': 'Your camera or microphone is being used by another app. Close that app, then reload the page. Meanwhile you can still see and hear the others.',
    'media.unsupported': 'This browser cannot use the camera and microphone here (the page must be opened over https). You can still see and hear the others.',
    'media.cameraFailed': 'Your camera could not be used, but the others can still hear you. To turn it on, click the lock icon in the address bar, allow Camera, then reload the page.',
    'media.micFailed': 'Your microphone could not be used, so the others cannot hear you. Click the lock icon in the address bar, allow Microphone, then reload the page.',
    'error.unknown_room': 'The consult has not started yet. Waiting for the clinic or doctor to open it…',
    'error.room_full': 'This consult is full (8 people); no one else can join.',
    'error.invalid_message': 'The join details are not valid. Please check the consult code and your name.',
    'error.bad_sdp': 'The audio and video connection could not be set up.',
    'error.bad_candidate': 'A network problem occurred while connecting audio and video.',
    'error.rate_limited': 'Too many requests were sent to the server. Please wait a moment.',
    'error.internal': 'The server had a problem. Please try again in a few minutes.',
    'error.unsupported_version': 'This app is out of date. Please reload the page.',
    'error.server_unreachable': 'Cannot reach the server. Check your Internet connection, then press “Rejoin”.',
    'error.connection_lost': 'The connection was lost and could not be restored. Check your Internet connection, then press “Rejoin”.',
    'error.generic': 'Something went wrong ({code}).',
  },
};

export const LANGS = ['vi', 'en'];
let current = 'vi';

/** Picks the language: `lang` link parameter, else the browser's language (vi* -> vi), else en. */
export function detectLang(params, navigatorLang = navigator.language) {
  const wanted = params.get('lang');
  if (LANGS.includes(wanted)) return wanted;
  return String(navigatorLang || '').toLowerCase().startsWith('vi') ? 'vi' : 'en';
}

export function setLang(lang) {
  current = LANGS.includes(lang) ? lang : 'vi';
  document.documentElement.lang = current;
}

export function getLang() {
  return current;
}

export function hasKey(key) {
  return key in STRINGS[current];
}

export function t(key, vars = {}) {
  const s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

/** Sets an element's text by i18n key (re-rendered on language switch by applyI18n). */
export function setText(el, key, vars) {
  el.dataset.i18n = key;
  if (vars) el.dataset.i18nVars = JSON.stringify(vars);
  else delete el.dataset.i18nVars;
  el.textContent = t(key, vars);
}

/** Sets an element's aria-label and tooltip by i18n key (re-rendered on language switch). */
export function setLabel(el, key) {
  el.dataset.i18nAria = key;
  el.dataset.i18nTitle = key;
  el.setAttribute('aria-label', t(key));
  el.title = t(key);
}

/** Fills every element with data-i18n (text, with optional JSON data-i18n-vars) or data-i18n-placeholder / data-i18n-aria / data-i18n-title (attributes). */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n, el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {});
  }
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  if (root === document) document.title = t('app.title');
}
