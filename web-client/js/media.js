// Local camera and microphone, with fallbacks: both, else audio only, else video only,
// else nothing (receive only). Returns the stream and the i18n key of a notice to show, if any.

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } };

/** i18n key for a getUserMedia failure where neither device could be opened. */
function noticeFor(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'media.denied';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'media.notFound';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'media.inUse';
    default:
      return 'media.denied';
  }
}

/**
 * @returns {Promise<{stream: MediaStream, notice: string|null, error: string|null}>}
 *   `error` is the DOMException name of the first failure, for diagnostics.
 */
export async function acquireLocalMedia() {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return { stream: new MediaStream(), notice: 'media.unsupported', error: 'unsupported' };
  let first;
  try {
    return { stream: await md.getUserMedia({ audio: AUDIO, video: VIDEO }), notice: null, error: null };
  } catch (err) {
    first = err;
    console.warn('getUserMedia(audio+video) failed:', err?.name, err?.message);
  }
  try {
    return { stream: await md.getUserMedia({ audio: AUDIO }), notice: 'media.cameraFailed', error: first?.name ?? 'Error' };
  } catch (err) {
    console.warn('getUserMedia(audio) failed:', err?.name);
  }
  try {
    return { stream: await md.getUserMedia({ video: VIDEO }), notice: 'media.micFailed', error: first?.name ?? 'Error' };
  } catch (err) {
    console.warn('getUserMedia(video) failed:', err?.name);
  }
  return { stream: new MediaStream(), notice: noticeFor(first), error: first?.name ?? 'Error' };
}

export function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}
