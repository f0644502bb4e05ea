// The consult workflow end to end, with invites only (no open join): an operator creates a
// consult through the API; the patient opens its invite link and waits in the lobby; the clinic
// (opened with its own invite link) admits them; media flows both ways; the specialist shares a
// 5 MB image that arrives byte-identical; the clinic removes the patient, whose media stops;
// forged invites, deny, observer, end consult; and the operator and summary pages.
// Run: npm test (needs target/release/consult-sfu, or CONSULT_SFU_BIN, and /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { TEST_OPERATOR, apiCall, inviteLink, launchBrowser, sleep, startServer, waitFor } from './lib/harness.mjs';
import { inboundByMid } from './lib/stats.mjs';

const KEY = TEST_OPERATOR.key;
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_TIMEOUT_MS = 40_000;
const IMAGE_BYTES = 5 * 1024 * 1024;

let server;

// A known signing key, so the test can make a correctly signed but expired invite.
const TOKEN_SECRET = 'test-token-secret-0123456789abcdef-0123456789';

before(async () => {
  server = await startServer({ openJoin: false, operators: [TEST_OPERATOR], env: { CONSULT_TOKEN_SECRET: TOKEN_SECRET } });
});

/** An HS256 JWT (docs/API.md "Invite tokens") signed with TOKEN_SECRET. */
function signInvite(claims) {
  const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', TOKEN_SECRET).update(head).digest('base64url')}`;
}

after(async () => {
  await server?.stop();
});

const api = (path, opts) => apiCall(server.baseUrl, KEY, path, opts);

async function createConsult(title, participants) {
  const { status, body } = await api('/consults', { method: 'POST', body: { title, participants } });
  assert.equal(status, 201, 'POST /consults answers 201');
  assert.ok(body.consult?.id, 'the consult has an id');
  assert.equal(body.consult.status, 'open');
  assert.ok(body.invites.some((i) => i.role === 'clinic'), 'a clinic invite is added for the operator');
  return body;
}

async function diagnostics(bots) {
  const out = [];
  for (const b of bots) {
    const log = await b.page.evaluate(() => window.consult?.log?.slice(-25).join('\n    ')).catch((e) => String(e));
    out.push(`  ${b.name} log:\n    ${log}`);
    if (b.page.__logs?.length) out.push(`  ${b.name} console:\n    ${b.page.__logs.slice(-10).join('\n    ')}`);
  }
  out.push(`  server log (tail):\n${server.log().split('\n').slice(-30).join('\n')}`);
  return out.join('\n');
}

const stateOf = (page) => page.evaluate(() => window.__consult?.state ?? null);

/** Video frames decoded and audio samples received from `fromId`, by kind. */
async function receivedFrom(page, fromId) {
  const byMid = await inboundByMid(page);
  const r = { video: 0, audio: 0 };
  for (const s of Object.values(byMid)) {
    if (s.from !== fromId) continue;
    if (s.kind === 'video') r.video += s.framesDecoded;
    else r.audio += s.samples;
  }
  return r;
}

/** Waits until `page` decodes video and receives audio from `fromId`, both growing. */
async function mediaFlows(page, fromId, what, bots) {
  let prev = await receivedFrom(page, fromId);
  await waitFor(
    async () => {
      const cur = await receivedFrom(page, fromId);
      const ok = prev.video > 0 && prev.audio > 0 && cur.video > prev.video && cur.audio > prev.audio;
      prev = cur;
      return ok;
    },
    { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 1500, what, describe: async () => `${JSON.stringify(prev)}\n${await diagnostics(bots)}` },
  );
}

test('invite, lobby, admit, media both ways, a 5 MB image byte-identical, remove', { timeout: 180_000 }, async () => {
  const created = await createConsult('Hội chẩn tim mạch — chị Hoa', [
    { name: 'BS. Lan', role: 'specialist' },
    { name: 'Chị Hoa', role: 'patient', lobby: true },
  ]);
  const consultId = created.consult.id;
  const invites = created.invites;
  const patientInvite = invites.find((i) => i.role === 'patient');
  assert.equal(patientInvite.lobby, true);
  assert.match(patientInvite.link, /[?&]invite=/);

  const bots = [];
  try {
    for (const name of ['clinic', 'patient', 'specialist']) {
      const browser = await launchBrowser();
      bots.push({ name, browser, page: await browser.newPage(name) });
    }
    const [clinic, patient, specialist] = bots;

    // The clinic joins with its invite (no lobby for the operator).
    await clinic.page.goto(inviteLink(server.baseUrl, invites, { role: 'clinic' }));
    await waitFor(() => clinic.page.evaluate(() => window.__consult.participantId && window.__consult.role === 'clinic'), {
      timeoutMs: JOIN_TIMEOUT_MS,
      what: 'the clinic to join',
      describe: () => diagnostics(bots),
    });
    assert.equal(await clinic.page.evaluate(() => window.__consult.title), 'Hội chẩn tim mạch — chị Hoa');

    // The patient waits in the lobby, with a friendly message.
    await patient.page.goto(`${inviteLink(server.baseUrl, invites, { role: 'patient' })}&lang=vi`);
    await waitFor(async () => (await stateOf(patient.page)) === 'lobby', {
      timeoutMs: JOIN_TIMEOUT_MS,
      what: 'the patient to be in the lobby',
      describe: () => diagnostics(bots),
    });
    await patient.page.waitForSelector('#lobby-screen', { state: 'visible' });
    assert.match(await patient.page.textContent('#lobby-screen'), /Phòng khám sẽ mời bạn vào/);
    assert.match(await patient.page.textContent('#lobby-hello'), /Chị Hoa/);
    const patientId = await patient.page.evaluate(() => window.__consult.participantId);

    // The clinic sees them waiting and admits them through the UI.
    await waitFor(() => clinic.page.evaluate((id) => window.__consult.waiting.some((w) => w.participant_id === id), patientId), {
      timeoutMs: 10_000,
      what: 'the clinic to see the patient waiting',
      describe: () => diagnostics(bots),
    });
    await clinic.page.waitForSelector('#waiting-panel', { state: 'visible' });
    assert.match(await clinic.page.textContent('#waiting-panel'), /Chị Hoa/);
    await clinic.page.click(`#waiting-list li[data-waiting-id="${patientId}"] .waiting-admit`);
    await waitFor(async () => (await stateOf(patient.page)) === 'connected', {
      timeoutMs: JOIN_TIMEOUT_MS,
      what: 'the admitted patient to connect',
      describe: () => diagnostics(bots),
    });
    await clinic.page.waitForSelector('#waiting-panel', { state: 'hidden', timeout: 5_000 });

    // The specialist joins directly (no lobby).
    await specialist.page.goto(inviteLink(server.baseUrl, invites, { role: 'specialist' }));
    await waitFor(async () => (await stateOf(specialist.page)) === 'connected', {
      timeoutMs: JOIN_TIMEOUT_MS,
      what: 'the specialist to connect',
      describe: () => diagnostics(bots),
    });
    const clinicId = await clinic.page.evaluate(() => window.__consult.participantId);
    const specialistId = await specialist.page.evaluate(() => window.__consult.participantId);

    // Media flows both ways between the patient and the clinic (and to the specialist).
    await mediaFlows(clinic.page, patientId, 'the clinic to receive the patient (video frames and audio samples growing)', bots);
    await mediaFlows(patient.page, clinicId, 'the patient to receive the clinic (video frames and audio samples growing)', bots);
    await mediaFlows(specialist.page, patientId, 'the specialist to receive the patient', bots);

    // Chat: the patient writes, everyone reads it (the sender too, from the server's echo).
    await waitFor(() => patient.page.evaluate(() => window.__consult.channelState === 'open'), { timeoutMs: 10_000, what: 'the patient data channel to open' });
    assert.equal(await patient.page.evaluate(() => window.__consult.sendChat('Em chào bác sĩ')), true);
    for (const b of [clinic, specialist, patient]) {
      await waitFor(() => b.page.evaluate(() => window.__consult.chat.some((m) => m.text === 'Em chào bác sĩ')), {
        timeoutMs: 5_000,
        what: `${b.name} to get the chat message`,
      });
    }
    const msg = await specialist.page.evaluate(() => window.__consult.chat.find((m) => m.text === 'Em chào bác sĩ'));
    assert.equal(msg.from, patientId);
    assert.equal(msg.role, 'patient');

    // The clinic mutes the patient's microphone: the patient's track is disabled and told why;
    // everyone sees the badge; the patient may unmute.
    await clinic.page.click(`.tile[data-participant-id="${patientId}"] .tile-mute`);
    await patient.page.waitForSelector('#info-notice', { state: 'visible', timeout: 5_000 });
    assert.match(await patient.page.textContent('#info-notice'), /Phòng khám đã tắt mic của bạn/);
    assert.equal(await patient.page.evaluate(() => window.consult.pc.getSenders().find((s) => s.track?.kind === 'audio').track.enabled), false);
    await specialist.page.waitForSelector(`.tile[data-participant-id="${patientId}"][data-audio-muted="true"]`, { timeout: 5_000 });
    await patient.page.click('#btn-mic');
    await specialist.page.waitForSelector(`.tile[data-participant-id="${patientId}"][data-audio-muted="false"]`, { timeout: 5_000 });
    assert.equal(await patient.page.isVisible('#info-notice'), false);

    // The specialist shares a 5 MB image; the patient and the clinic get the same bytes.
    const started = Date.now();
    const sent = await specialist.page.evaluate(async (size) => {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
      const file = new File([bytes], 'sieu-am-tim.png', { type: 'image/png' });
      const r = await window.__consult.sendImage(file);
      return { hex, ...r };
    }, IMAGE_BYTES);
    assert.equal(sent.sha256, sent.hex, 'the sender hashed what it sent');
    for (const b of [patient, clinic]) {
      let imgs = [];
      await waitFor(
        async () => {
          imgs = await b.page.evaluate(() => window.__consult.receivedImages);
          return imgs.length > 0;
        },
        { timeoutMs: 30_000, what: `${b.name} to receive the image`, describe: async () => `${JSON.stringify(imgs)}\n${await diagnostics(bots)}` },
      );
      assert.equal(imgs[0].sha256, sent.hex, `${b.name} got the image byte-identical`);
      assert.equal(imgs[0].size, IMAGE_BYTES);
      assert.equal(imgs[0].file, 'sieu-am-tim.png');
      assert.equal(imgs[0].from, specialistId);
    }
    console.log(`5 MB image relayed to two receivers in ${Date.now() - started} ms`);
    // The receiver shows a thumbnail that opens full size, and a download link.
    await patient.page.click('#btn-chat');
    await patient.page.waitForSelector('#chat-list .chat-thumb img', { state: 'visible', timeout: 5_000 });
    assert.equal(await patient.page.getAttribute('#chat-list .chat-download', 'download'), 'sieu-am-tim.png');
    // A patient may not share images (the button is not offered).
    assert.equal(await patient.page.isVisible('#chat-image-label'), false);

    // The specialist shares the screen (no renegotiation of its own): the patient shows it large.
    assert.equal(await patient.page.isVisible('#btn-share'), false, 'a patient cannot share the screen');
    await specialist.page.click('#btn-share');
    await waitFor(() => specialist.page.evaluate(() => window.__consult.sharing), { timeoutMs: 10_000, what: 'the specialist to share', describe: () => diagnostics(bots) });
    await patient.page.waitForSelector(`#screen-view[data-sharer="${specialistId}"]`, { state: 'visible', timeout: 10_000 });
    const screenMid = await patient.page.evaluate((id) => window.__consult.screenMids[id], specialistId);
    let frames = 0;
    await waitFor(
      async () => {
        const s = (await inboundByMid(patient.page))[screenMid];
        const ok = s && frames > 0 && s.framesDecoded > frames;
        frames = s?.framesDecoded ?? 0;
        return ok;
      },
      { timeoutMs: 15_000, intervalMs: 1000, what: 'the patient to decode the screen share', describe: () => diagnostics(bots) },
    );
    // The camera tile keeps the camera.
    await mediaFlows(patient.page, specialistId, 'the patient to keep receiving the specialist camera', bots);
    await specialist.page.click('#btn-share');
    await patient.page.waitForSelector('#screen-view', { state: 'hidden', timeout: 10_000 });

    // The clinic removes the patient (tile button, then confirm).
    const patientMids = {};
    for (const b of [clinic, specialist]) {
      const byMid = await inboundByMid(b.page);
      patientMids[b.name] = Object.entries(byMid).filter(([, s]) => s.from === patientId).map(([mid]) => mid);
      assert.equal(patientMids[b.name].length, 2, `${b.name} receives the patient's audio and video`);
    }
    await clinic.page.click(`.tile[data-participant-id="${patientId}"] .tile-remove`);
    await clinic.page.waitForSelector('#confirm-dialog[open]');
    await clinic.page.click('#confirm-ok');
    await waitFor(async () => (await stateOf(patient.page)) === 'closed', {
      timeoutMs: 10_000,
      what: 'the removed patient to be closed',
      describe: () => diagnostics(bots),
    });
    assert.equal(await patient.page.evaluate(() => window.__consult.closedReason), 'removed');
    await patient.page.waitForSelector('#end-screen', { state: 'visible' });
    assert.match(await patient.page.textContent('#end-heading'), /mời ra khỏi buổi khám/);
    assert.equal(await patient.page.isVisible('#btn-rejoin'), false, 'no rejoin after removal');
    for (const b of [clinic, specialist]) {
      await b.page.waitForSelector(`.tile[data-participant-id="${patientId}"]`, { state: 'detached', timeout: 10_000 });
    }
    // The others' inbound RTP from the patient stops growing (or is gone).
    await sleep(1500);
    const before = await Promise.all([clinic, specialist].map((b) => inboundByMid(b.page)));
    await sleep(3000);
    const later = await Promise.all([clinic, specialist].map((b) => inboundByMid(b.page)));
    [clinic, specialist].forEach((b, i) => {
      for (const mid of patientMids[b.name]) {
        const a = before[i][mid];
        const z = later[i][mid];
        if (!a || !z) continue; // the transceiver is gone: nothing received
        assert.equal(z.packets, a.packets, `${b.name}: no more packets from the removed patient on mid ${mid}`);
      }
    });
    // The removed patient's invite no longer works.
    const again = await patient.browser.newPage('patient-again');
    await again.goto(inviteLink(server.baseUrl, invites, { role: 'patient' }));
    await waitFor(async () => ['failed', 'closed'].includes(await stateOf(again)), { timeoutMs: JOIN_TIMEOUT_MS, what: 'the withdrawn invite to be refused' });
    assert.equal(await again.evaluate(() => window.__consult.errorCode), 'unauthorized');
    await again.close();

    // The clinic and the specialist still see each other.
    await mediaFlows(clinic.page, specialistId, 'the clinic to keep receiving the specialist', bots);

    // The audit trail has the story; after the end the summary lists the participants.
    await apiCall(server.baseUrl, KEY, `/consults/${consultId}/end`, { method: 'POST' });
    for (const b of [clinic, specialist]) {
      await waitFor(() => b.page.evaluate(() => window.__consult.closedReason === 'consult_ended'), {
        timeoutMs: 10_000,
        what: `${b.name} to be told the consult ended`,
      });
    }
    let audit;
    await waitFor(
      async () => {
        audit = (await api(`/consults/${consultId}/audit`)).body;
        const actions = new Set(audit.events.map((e) => e.action));
        return ['created', 'waiting', 'admitted', 'removed', 'ended'].every((a) => actions.has(a));
      },
      { timeoutMs: 10_000, what: 'the audit trail to have created, waiting, admitted, removed, ended', describe: async () => JSON.stringify(audit) },
    );
    let summary;
    await waitFor(
      async () => {
        summary = (await api(`/consults/${consultId}/summary`)).body;
        return summary.participants?.length >= 3;
      },
      { timeoutMs: 10_000, what: 'the summary to list three participants', describe: async () => JSON.stringify(summary) },
    );
    const pat = summary.participants.find((p) => p.role === 'patient');
    assert.ok(pat.seconds > 0, 'the patient spent time in the consult');
  } finally {
    for (const b of bots) await b.browser.close();
  }
});

test('forged, expired and damaged invite links show the unauthorized message', { timeout: 60_000 }, async () => {
  const created = await createConsult('Kiểm tra link', [{ name: 'Chị Hoa', role: 'patient' }]);
  const real = new URL(inviteLink(server.baseUrl, created.invites, { role: 'patient' }));
  const token = real.searchParams.get('invite');
  const [h, p, s] = token.split('.');
  // Same header and claims, another signature: forged.
  const forged = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  // Correctly signed, but expired an hour ago.
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  const expired = signInvite({ ...claims, iat: now - 7200, exp: now - 3600 });
  const fresh = signInvite({ ...claims, iat: now, exp: now + 3600 });
  const browser = await launchBrowser({ fakeMedia: false });
  try {
    // The same claims signed now do join (to the lobby): so the expired one fails for its expiry.
    const ok = await browser.newPage('fresh');
    await ok.goto(`${server.baseUrl}/?invite=${fresh}`);
    await waitFor(async () => (await stateOf(ok)) === 'lobby', { timeoutMs: JOIN_TIMEOUT_MS, what: 'a freshly signed invite to reach the lobby' });
    await ok.close();
    for (const [what, tok, lang, text] of [
      ['forged', forged, 'vi', /Đường link mời không hợp lệ hoặc đã hết hạn/],
      ['expired', expired, 'en', /invite link is not valid or has expired/],
      ['damaged', 'not-a-token', 'en', /invite link is not valid or has expired/],
    ]) {
      const page = await browser.newPage(what);
      let gum = 0;
      await page.exposeFunction('__gumCalled', () => gum++);
      await page.addInitScript(() => {
        const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = (c) => {
          window.__gumCalled();
          return orig(c);
        };
      });
      await page.goto(`${server.baseUrl}/?invite=${encodeURIComponent(tok)}&lang=${lang}`);
      await waitFor(async () => (await stateOf(page)) === 'failed', { timeoutMs: JOIN_TIMEOUT_MS, what: `the ${what} invite to fail` });
      assert.equal(await page.evaluate(() => window.__consult.errorCode), 'unauthorized');
      await page.waitForSelector('#end-screen', { state: 'visible' });
      assert.match(await page.textContent('#end-body'), text);
      assert.equal(await page.isVisible('#btn-rejoin'), false);
      assert.equal(gum, 0, 'no camera prompt for a refused invite');
      await page.close();
    }
  } finally {
    await browser.close();
  }
});

test('deny from the lobby; an observer receives only; the clinic ends the consult', { timeout: 90_000 }, async () => {
  const created = await createConsult('Giảng dạy', [
    { name: 'Anh Nam', role: 'patient', lobby: true },
    { name: 'Học viên Minh', role: 'observer', lobby: false },
  ]);
  const browser = await launchBrowser({ fakeMedia: false }); // no camera: cheap pages
  try {
    const clinic = await browser.newPage('clinic');
    await clinic.goto(`${inviteLink(server.baseUrl, created.invites, { role: 'clinic' })}&lang=en`);
    await waitFor(async () => (await stateOf(clinic)) === 'connected', { timeoutMs: JOIN_TIMEOUT_MS, what: 'the clinic to connect' });
    assert.equal(await clinic.isVisible('#btn-end'), true, 'the clinic has the end-consult button');

    const patient = await browser.newPage('patient');
    await patient.goto(`${inviteLink(server.baseUrl, created.invites, { role: 'patient' })}&lang=en`);
    await waitFor(async () => (await stateOf(patient)) === 'lobby', { timeoutMs: JOIN_TIMEOUT_MS, what: 'the patient to wait' });
    const patientId = await patient.evaluate(() => window.__consult.participantId);
    await clinic.waitForSelector(`#waiting-list li[data-waiting-id="${patientId}"] .waiting-deny`, { timeout: 10_000 });
    await clinic.click(`#waiting-list li[data-waiting-id="${patientId}"] .waiting-deny`);
    await clinic.click('#confirm-ok');
    await waitFor(async () => (await stateOf(patient)) === 'closed', { timeoutMs: 10_000, what: 'the denied patient to be closed' });
    assert.equal(await patient.evaluate(() => window.__consult.closedReason), 'denied');
    assert.match(await patient.textContent('#end-heading'), /not let in/);

    // The observer: no camera or microphone asked for, no sending controls, but receives chat.
    const observer = await browser.newPage('observer');
    let gum = 0;
    await observer.exposeFunction('__gumCalled', () => gum++);
    await observer.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () => {
        window.__gumCalled();
        return Promise.reject(new DOMException('no', 'NotAllowedError'));
      };
    });
    await observer.goto(`${inviteLink(server.baseUrl, created.invites, { role: 'observer' })}&lang=en`);
    await waitFor(async () => (await stateOf(observer)) === 'connected', { timeoutMs: JOIN_TIMEOUT_MS, what: 'the observer to connect' });
    assert.equal(gum, 0, 'an observer never asks for the camera or microphone');
    assert.equal(await observer.isVisible('#btn-mic'), false);
    assert.equal(await observer.isVisible('#btn-share'), false);
    await observer.click('#btn-chat');
    assert.equal(await observer.isVisible('#chat-form'), false, 'an observer cannot chat');
    const senders = await observer.evaluate(() => window.consult.pc.getSenders().filter((s) => s.track).length);
    assert.equal(senders, 0, 'an observer publishes nothing');
    await waitFor(() => clinic.evaluate(() => window.__consult.channelState === 'open'), { timeoutMs: 10_000, what: 'the clinic data channel' });
    await waitFor(() => observer.evaluate(() => window.__consult.channelState === 'open'), { timeoutMs: 10_000, what: 'the observer data channel' });
    await clinic.evaluate(() => window.__consult.sendChat('Chào học viên'));
    await waitFor(() => observer.evaluate(() => window.__consult.chat.some((m) => m.text === 'Chào học viên')), { timeoutMs: 5_000, what: 'the observer to read the chat' });
    const observerId = await observer.evaluate(() => window.__consult.participantId);
    await clinic.waitForSelector(`.tile[data-participant-id="${observerId}"][data-role="observer"]`, { timeout: 5_000 });

    // The clinic ends the consult: everyone is told, and the links stop working.
    await clinic.click('#btn-end');
    await clinic.click('#confirm-ok');
    for (const p of [observer, clinic]) {
      await waitFor(() => p.evaluate(() => window.__consult.closedReason === 'consult_ended'), { timeoutMs: 10_000, what: 'consult_ended' });
    }
    assert.match(await observer.textContent('#end-heading'), /consult has ended/);
    const late = await browser.newPage('late');
    await late.goto(`${inviteLink(server.baseUrl, created.invites, { role: 'observer' })}&lang=en`);
    await waitFor(async () => ['failed', 'closed'].includes(await stateOf(late)), { timeoutMs: JOIN_TIMEOUT_MS, what: 'a late join to be refused' });
    assert.match(await late.textContent('#end-screen'), /ended/);
    const { body } = await api(`/consults/${created.consult.id}`);
    assert.equal(body.consult.status, 'ended');
  } finally {
    await browser.close();
  }
});

test('operator page: key from the link, create a consult, invites, list, audit, end; summary page', { timeout: 60_000 }, async () => {
  const browser = await launchBrowser({ fakeMedia: false });
  try {
    const page = await browser.newPage('operator');
    page.on('dialog', (d) => d.accept());
    if (server.operatorLink) assert.match(server.operatorLink, /\/operator\.html#key=/, 'the server prints the operator link');
    await page.goto(`${server.baseUrl}/operator.html?lang=en#key=${encodeURIComponent(KEY)}`);
    await page.waitForSelector('#create-card', { state: 'visible', timeout: 10_000 });
    assert.ok(!page.url().includes('key='), `the key is removed from the address bar: ${page.url()}`);
    assert.equal(await page.evaluate(() => localStorage.getItem('consult.operatorKey')), KEY);

    await page.fill('#c-title', 'Tái khám — ông Tư');
    const rows = page.locator('#p-rows .prow');
    await rows.nth(0).locator('[name=name]').fill('BS. Lan');
    await rows.nth(1).locator('[name=name]').fill('Ông Tư');
    assert.equal(await rows.nth(1).locator('[name=lobby]').isChecked(), true, 'a patient waits in the lobby by default');
    await page.click('#btn-add-row');
    await rows.nth(2).locator('[name=name]').fill('Học viên Minh');
    await rows.nth(2).locator('[name=role]').selectOption('observer');
    await page.click('#btn-create');
    await page.waitForSelector('#invites-card', { state: 'visible', timeout: 10_000 });
    const invites = await page.evaluate(() => window.__operator.lastInvites.invites.map((i) => ({ role: i.role, name: i.name, lobby: i.lobby })));
    assert.equal(invites.length, 4, `three participants and the operator: ${JSON.stringify(invites)}`);
    assert.deepEqual(invites.filter((i) => i.role === 'patient').map((i) => i.lobby), [true]);
    assert.equal(await page.locator('#invite-list .invite-join').count(), 1, 'one "join as the clinic" button');
    assert.equal(await page.locator('#invite-list .invite-copy').count(), 4);
    const consultId = await page.evaluate(() => window.__operator.lastInvites.consult.id);

    const item = page.locator(`#consult-list li[data-consult-id="${consultId}"]`);
    await item.waitFor({ timeout: 5_000 });
    assert.match(await item.textContent(), /Tái khám — ông Tư/);
    await item.locator('.consult-audit').click();
    await page.waitForSelector(`#consult-list li[data-consult-id="${consultId}"] table`, { timeout: 5_000 });
    await page.locator(`#consult-list li[data-consult-id="${consultId}"] .consult-end`).click();
    await page.waitForSelector(`#consult-list li[data-consult-id="${consultId}"] .pill[data-status="ended"]`, { timeout: 5_000 });

    await page.goto(`${server.baseUrl}/summary.html?id=${encodeURIComponent(consultId)}&lang=en`);
    await page.waitForSelector('#overview', { state: 'visible', timeout: 10_000 });
    assert.match(await page.textContent('#s-title'), /Tái khám — ông Tư/);
    assert.match(await page.textContent('#audit'), /created the consult/);
  } finally {
    await browser.close();
  }
});
