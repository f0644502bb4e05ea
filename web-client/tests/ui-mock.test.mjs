// The consult-workflow UI against a scripted server: the page's WebSocket is answered by the
// test (Playwright routeWebSocket) and the operator API by page.route, so the lobby, the waiting
// list, moderation, closed reasons and the operator page are checked against the protocol
// contract without media. One browser, no camera.
// Run: npm test (needs the consult-sfu binary only to serve the files).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, waitFor } from './lib/harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser({ fakeMedia: false });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Routes the page's /ws to a script: returns {sent: [client frames], send(msg)}. */
async function mockSignaling(page, onClientMessage) {
  const ctl = { sent: [], ws: null };
  ctl.send = (msg) => ctl.ws.send(JSON.stringify({ v: 1, ...msg }));
  await page.routeWebSocket(/\/ws$/, (ws) => {
    ctl.ws = ws;
    ws.onMessage((data) => {
      const msg = JSON.parse(String(data));
      ctl.sent.push(msg);
      onClientMessage?.(msg, ctl);
    });
  });
  return ctl;
}

const layers = [{ rid: 'q', scale_resolution_down_by: 4, max_bitrate: 150000, max_framerate: 15 }];
const you = (id, name, role) => ({ participant_id: id, name, role, audio_muted: false, video_muted: false });

test('patient: invite join, lobby screen, admitted, forced mute, removed', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('patient');
  const sig = await mockSignaling(page, (msg, ctl) => {
    if (msg.type === 'join') ctl.send({ type: 'lobby', participant_id: 'p7', room: 'c-1', title: 'Tái khám tim mạch', name: 'Chị Hoa', role: 'patient' });
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=vi`);
  await page.waitForSelector('#lobby-screen', { state: 'visible', timeout: 5_000 });
  assert.deepEqual(sig.sent[0], { v: 1, type: 'join', invite: 'aaa.bbb.ccc' });
  assert.equal(await page.textContent('#lobby-hello'), 'Xin chào Chị Hoa!');
  assert.match(await page.textContent('#lobby-title'), /Tái khám tim mạch/);
  assert.match(await page.textContent('.lobby-wait'), /Phòng khám sẽ mời bạn vào/);
  assert.equal(await page.evaluate(() => window.__consult.state), 'lobby');
  assert.equal(await page.textContent('#status-text'), 'Đang chờ được mời vào…');

  // Admitted: the call screen, and the client's only offer (no screen transceiver for a patient).
  sig.send({ type: 'joined', participant_id: 'p7', room: 'c-1', title: 'Tái khám tim mạch', you: you('p7', 'Chị Hoa', 'patient'), participants: [you('p1', 'Phòng khám', 'clinic')], video_layers: layers });
  await page.waitForSelector('#call-screen', { state: 'visible', timeout: 5_000 });
  await waitFor(() => sig.sent.find((m) => m.type === 'offer'), { timeoutMs: 5_000, what: 'the offer' });
  const offer = sig.sent.find((m) => m.type === 'offer');
  assert.equal(offer.screen_mid, undefined, 'a patient offers no screen transceiver');
  assert.match(offer.sdp, /m=application .* webrtc-datachannel/, 'the offer carries the data channel');
  assert.match(await page.textContent('#room-label'), /Tái khám tim mạch/);
  assert.equal(await page.isVisible('#btn-share'), false);
  assert.equal(await page.isVisible('#btn-end'), false);
  assert.equal(await page.isVisible(`.tile[data-participant-id="p1"] .tile-actions`), false, 'no moderation for a patient');

  // Forced mute (no microphone here: still told).
  sig.send({ type: 'mute_changed', participant_id: 'p7', kind: 'audio', muted: true, by: 'p1' });
  await page.waitForSelector('#info-notice', { state: 'visible', timeout: 3_000 });
  assert.match(await page.textContent('#info-notice'), /Phòng khám đã tắt mic của bạn/);

  sig.send({ type: 'closed', reason: 'removed' });
  await page.waitForSelector('#end-screen', { state: 'visible', timeout: 3_000 });
  assert.equal(await page.textContent('#end-heading'), 'Bạn đã được mời ra khỏi buổi khám');
  assert.equal(await page.isVisible('#btn-rejoin'), false);
  sig.ws.close();
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__consult.state), 'closed', 'no reconnect after closed');
  await page.close();
});

test('clinic: waiting list with admit and deny, tile moderation, end consult, screen transceiver', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('clinic');
  const sig = await mockSignaling(page, (msg, ctl) => {
    if (msg.type === 'join') {
      ctl.send({ type: 'joined', participant_id: 'p1', room: 'c-1', title: 'Hội chẩn', you: you('p1', 'Phòng khám Bắc Hà', 'clinic'), participants: [you('p2', 'BS. Lan', 'specialist')], video_layers: layers });
      ctl.send({ type: 'lobby_changed', waiting: [you('p7', 'Chị Hoa', 'patient'), you('p8', 'Anh Nam', 'patient')] });
    }
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await page.waitForSelector('#waiting-panel', { state: 'visible', timeout: 5_000 });
  assert.match(await page.textContent('#waiting-heading'), /2 waiting to join/);
  assert.equal(await page.getAttribute('#waiting-panel', 'class'), 'notice waiting-panel fresh');
  await page.click('#waiting-list li[data-waiting-id="p7"] .waiting-admit');
  await waitFor(() => sig.sent.find((m) => m.type === 'admit'), { timeoutMs: 3_000, what: 'admit' });
  assert.deepEqual(sig.sent.find((m) => m.type === 'admit'), { v: 1, type: 'admit', participant_id: 'p7' });
  await page.click('#waiting-list li[data-waiting-id="p8"] .waiting-deny');
  await page.waitForSelector('#confirm-dialog[open]');
  assert.match(await page.textContent('#confirm-text'), /Anh Nam/);
  await page.click('#confirm-ok');
  await waitFor(() => sig.sent.find((m) => m.type === 'deny'), { timeoutMs: 3_000, what: 'deny' });
  assert.equal(sig.sent.find((m) => m.type === 'deny').participant_id, 'p8');
  sig.send({ type: 'lobby_changed', waiting: [] });
  await page.waitForSelector('#waiting-panel', { state: 'hidden', timeout: 3_000 });

  // The offer names the pre-allocated screen transceiver.
  await waitFor(() => sig.sent.find((m) => m.type === 'offer'), { timeoutMs: 5_000, what: 'the offer' });
  const offer = sig.sent.find((m) => m.type === 'offer');
  assert.equal(typeof offer.screen_mid, 'string', 'a clinic names its screen transceiver');
  assert.match(offer.sdp, new RegExp(`a=mid:${offer.screen_mid}\\r\\n`));

  // Tile moderation: remove asks first; cancel sends nothing.
  await page.click('.tile[data-participant-id="p2"] .tile-remove');
  await page.click('#confirm-cancel');
  await page.waitForTimeout(200);
  assert.equal(sig.sent.filter((m) => m.type === 'remove').length, 0, 'cancel removes nobody');
  await page.click('.tile[data-participant-id="p2"] .tile-remove');
  await page.click('#confirm-ok');
  await waitFor(() => sig.sent.find((m) => m.type === 'remove'), { timeoutMs: 3_000, what: 'remove' });
  assert.equal(sig.sent.find((m) => m.type === 'remove').participant_id, 'p2');

  assert.equal(await page.isVisible('#btn-end'), true);
  await page.click('#btn-end');
  await page.click('#confirm-ok');
  await waitFor(() => sig.sent.find((m) => m.type === 'end_consult'), { timeoutMs: 3_000, what: 'end_consult' });
  sig.send({ type: 'closed', reason: 'consult_ended' });
  await page.waitForSelector('#end-screen', { state: 'visible', timeout: 3_000 });
  assert.equal(await page.textContent('#end-heading'), 'The consult has ended');
  await page.close();
});

test('unauthorized and consult_ended errors before joining', { timeout: 20_000 }, async () => {
  for (const [code, re] of [['unauthorized', /not valid or has expired/], ['consult_ended', /consult has ended/]]) {
    const page = await browser.newPage(code);
    await mockSignaling(page, (msg, ctl) => {
      if (msg.type === 'join') ctl.send({ type: 'error', code, message: 'x' });
    });
    await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
    await page.waitForSelector('#end-screen', { state: 'visible', timeout: 5_000 });
    assert.match(await page.textContent('#end-screen'), re);
    assert.equal(await page.isVisible('#btn-rejoin'), false);
    await page.close();
  }
});

test('server_busy: the client waits the hinted time and joins again by itself', { timeout: 20_000 }, async () => {
  const page = await browser.newPage('busy');
  const joins = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    ws.onMessage((data) => {
      const msg = JSON.parse(String(data));
      if (msg.type !== 'join') return;
      joins.push(performance.now());
      if (joins.length === 1) {
        ws.send(JSON.stringify({ v: 1, type: 'error', code: 'server_busy', message: 'busy', retry_after_ms: 1500 }));
      } else {
        ws.send(JSON.stringify({ v: 1, type: 'joined', participant_id: 'p2', room: 'c-1', title: 'T', you: you('p2', 'Chị Hoa', 'patient'), participants: [], video_layers: layers }));
      }
    });
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await waitFor(() => joins.length >= 1, { timeoutMs: 5_000, what: 'the first join' });
  await page.waitForSelector('#info-notice', { state: 'visible', timeout: 5_000 });
  assert.match(await page.textContent('#info-notice'), /server is busy/);
  await waitFor(() => joins.length >= 2, { timeoutMs: 8_000, what: 'the second join' });
  const waited = joins[1] - joins[0];
  assert.ok(waited >= 1100 && waited <= 2500, `rejoined after ${waited} ms (hint 1500 ms, jitter 0.8-1.2)`);
  await page.waitForSelector('#info-notice', { state: 'hidden', timeout: 5_000 });
  await waitFor(() => page.evaluate(() => window.consult.participantId === 'p2'), { timeoutMs: 5_000, what: 'joined' });
  await page.close();
});

test('a dropped socket resumes as the same participant with the same peer connection; reconnecting tiles', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('resume');
  const sockets = [];
  const joins = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    sockets.push(ws);
    ws.onMessage((data) => {
      const msg = JSON.parse(String(data));
      if (msg.type !== 'join') return;
      joins.push(msg);
      const resumed = !!msg.resume;
      ws.send(JSON.stringify({ v: 1, type: 'joined', participant_id: 'p2', room: 'c-1', title: 'T', you: you('p2', 'Chị Hoa', 'patient'),
        participants: [you('p1', 'Phòng khám', 'clinic')], video_layers: layers, resume_token: resumed ? 'token-2' : 'token-1', resumed }));
    });
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await page.waitForSelector('#call-screen', { state: 'visible', timeout: 5_000 });
  await page.evaluate(() => { window.__firstPc = window.consult.pc; });

  // Another participant's connection drops: its tile says so, and stops saying so when back.
  sockets[0].send(JSON.stringify({ v: 1, type: 'participant_reconnecting', participant_id: 'p1', reconnecting: true }));
  await page.waitForSelector('[data-participant-id="p1"] .reconnecting', { state: 'visible', timeout: 5_000 });
  assert.match(await page.textContent('[data-participant-id="p1"] .reconnecting'), /reconnecting/i);
  assert.deepEqual(await page.evaluate(() => [...window.consult.reconnecting]), ['p1']);
  sockets[0].send(JSON.stringify({ v: 1, type: 'participant_reconnecting', participant_id: 'p1', reconnecting: false }));
  await page.waitForSelector('[data-participant-id="p1"] .reconnecting', { state: 'hidden', timeout: 5_000 });

  // A fresh token replaces the first; then our own socket drops (the server's side closes it).
  sockets[0].send(JSON.stringify({ v: 1, type: 'resume_token', resume_token: 'token-1b' }));
  await new Promise((r) => setTimeout(r, 200));
  await sockets[0].close({ code: 1006 });
  await waitFor(() => joins.length >= 2, { timeoutMs: 8_000, what: 'the resume join' });
  assert.equal(joins[1].resume, 'token-1b', 'resumes with the latest token');
  assert.equal(joins[1].invite, 'aaa.bbb.ccc', 'and its invite, for a fresh join if the resume fails');
  await waitFor(() => page.evaluate(() => window.consult.resumes === 1), { timeoutMs: 5_000, what: 'resumed' });
  assert.equal(await page.evaluate(() => window.consult.pc === window.__firstPc), true, 'the same peer connection');
  assert.equal(await page.evaluate(() => window.consult.participantId), 'p2');
  assert.equal(await page.evaluate(() => window.consult.participants.size), 1, 'nobody twice');

  // A resume the server refuses ends in a fresh join without `resume`.
  joins.length = 0;
  await sockets[1].close({ code: 1006 });
  await waitFor(() => joins.length >= 1, { timeoutMs: 8_000, what: 'the second resume join' });
  assert.equal(joins[0].resume, 'token-2');
  sockets[2].send(JSON.stringify({ v: 1, type: 'error', code: 'resume_failed', message: 'grace over' }));
  await waitFor(() => joins.length >= 2, { timeoutMs: 8_000, what: 'the fresh join' });
  assert.equal(joins[1].resume, undefined);
  assert.equal(joins[1].invite, 'aaa.bbb.ccc');
  await page.close();
});

test('cluster: a redirect is followed with the same join, a resume goes to the consult\'s node, a bad one is refused', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('redirect');
  const sockets = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const entry = { url: ws.url(), joins: [] };
    sockets.push(entry);
    ws.onMessage((data) => {
      const msg = JSON.parse(String(data));
      if (msg.type !== 'join') return;
      entry.joins.push(msg);
      if (!ws.url().includes('node-2.test')) {
        ws.send(JSON.stringify({ v: 1, type: 'redirect', url: 'ws://node-2.test:8443/ws' }));
        ws.close();
        return;
      }
      ws.send(JSON.stringify({ v: 1, type: 'joined', participant_id: 'p4', room: 'c-1', title: 'T', you: you('p4', 'Chị Hoa', 'patient'),
        participants: [], video_layers: layers, resume_token: 'token-n2', resumed: !!msg.resume }));
    });
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await page.waitForSelector('#call-screen', { state: 'visible', timeout: 5_000 });
  assert.equal(sockets.length, 2, 'one redirect, one join');
  assert.equal(sockets[1].url, 'ws://node-2.test:8443/ws');
  assert.deepEqual(sockets[1].joins[0], sockets[0].joins[0], 'the same join on the consult\'s node');

  // The socket to the consult's node drops: the resume goes straight back there.
  await page.evaluate(() => window.consult.dropSignaling());
  await waitFor(() => sockets.length >= 3 && sockets[2].joins.length > 0, { timeoutMs: 8_000, what: 'the resume' });
  assert.equal(sockets[2].url, 'ws://node-2.test:8443/ws');
  assert.equal(sockets[2].joins[0].resume, 'token-n2');
  await page.close();

  // A redirect anywhere but a node's signaling socket is not followed.
  const bad = await browser.newPage('bad-redirect');
  const seen = [];
  await bad.routeWebSocket(/\/ws$/, (ws) => {
    seen.push(ws.url());
    ws.onMessage(() => ws.send(JSON.stringify({ v: 1, type: 'redirect', url: 'javascript:alert(1)' })));
  });
  await bad.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await bad.waitForSelector('#end-screen', { state: 'visible', timeout: 5_000 });
  assert.equal(seen.length, 1, 'no second socket');
  await bad.close();
});

test('operator page against a scripted API', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('operator');
  const requests = [];
  const consult = { id: 'c-abc', clinic: 'Phòng khám Bắc Hà', title: 'Tái khám', scheduled_at: null, created_at: '2026-11-26T01:00:00Z', ended_at: null, status: 'open' };
  const invites = [
    { name: 'BS. Lan', role: 'specialist', lobby: false, token_id: 't1', expires_at: '2026-11-27T01:00:00Z', link: '/?invite=a.b.c' },
    { name: 'Chị Hoa', role: 'patient', lobby: true, token_id: 't2', expires_at: '2026-11-27T01:00:00Z', link: '/?invite=d.e.f' },
    { name: 'Phòng khám Bắc Hà', role: 'clinic', lobby: false, token_id: 't3', expires_at: '2026-11-27T01:00:00Z', link: '/?invite=g.h.i' },
  ];
  let list = [];
  await page.route('**/api/v1/**', async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    requests.push({ method: req.method(), path: url.pathname, auth: req.headers().authorization, body: req.postDataJSON?.() ?? null });
    if (req.headers().authorization !== 'Bearer good-key-0123456789') {
      return route.fulfill({ status: 401, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unauthorized', message: 'bad key' } }) });
    }
    if (url.pathname === '/api/v1/consults' && req.method() === 'POST') {
      list = [consult];
      return route.fulfill({ status: 201, contentType: 'application/json', body: JSON.stringify({ consult, invites }) });
    }
    if (url.pathname === '/api/v1/consults') return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ consults: list }) });
    if (url.pathname === '/api/v1/consults/c-abc/audit') {
      return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ events: [{ at: '2026-11-26T01:00:00Z', action: 'created', actor: 'Phòng khám Bắc Hà', actor_role: 'clinic', subject: null, detail: null }] }) });
    }
    if (url.pathname === '/api/v1/consults/c-abc/end') {
      list = [{ ...consult, status: 'ended', ended_at: '2026-11-26T02:00:00Z' }];
      return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ consult: list[0] }) });
    }
    return route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'not_found', message: 'no' } }) });
  });
  page.on('dialog', (d) => d.accept());

  // A wrong key brings the key form back with a message; the right one is remembered.
  await page.goto(`${server.baseUrl}/operator.html?lang=en#key=wrong-key`);
  await page.waitForSelector('#key-card', { state: 'visible', timeout: 5_000 });
  assert.match(await page.textContent('#page-error'), /key is wrong/);
  assert.ok(!page.url().includes('wrong-key'), 'the key is taken out of the address bar');
  await page.fill('#key-input', 'good-key-0123456789');
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('#create-card', { state: 'visible', timeout: 5_000 });
  assert.equal(await page.evaluate(() => localStorage.getItem('consult.operatorKey')), 'good-key-0123456789');

  // Create: title, time, rows (the empty third row is dropped).
  await page.fill('#c-title', 'Tái khám');
  await page.fill('#c-when', '2026-12-01T09:30');
  await page.fill('#c-expires', '48');
  const rows = page.locator('#p-rows .prow');
  await rows.nth(0).locator('[name=name]').fill('BS. Lan');
  await rows.nth(1).locator('[name=name]').fill('Chị Hoa');
  await page.click('#btn-add-row');
  await page.click('#btn-create');
  await page.waitForSelector('#invites-card', { state: 'visible', timeout: 5_000 });
  const post = requests.find((r) => r.method === 'POST' && r.path === '/api/v1/consults');
  assert.equal(post.body.title, 'Tái khám');
  assert.equal(post.body.expires_in_hours, 48);
  assert.equal(new Date(post.body.scheduled_at).getTime(), new Date(2026, 11, 1, 9, 30).getTime());
  assert.deepEqual(post.body.participants, [
    { name: 'BS. Lan', role: 'specialist', lobby: false },
    { name: 'Chị Hoa', role: 'patient', lobby: true },
  ]);
  assert.equal(await page.locator('#invite-list li').count(), 3);
  assert.equal(await page.locator('#invite-list .invite-join').count(), 1);
  assert.match(await page.textContent('#invite-list li[data-role="patient"] .invite-link'), /^http:\/\/127\.0\.0\.1:\d+\/\?invite=d\.e\.f$/);

  // The list: audit trail, end, summary link.
  const item = page.locator('#consult-list li[data-consult-id="c-abc"]');
  await item.waitFor({ timeout: 5_000 });
  await item.locator('.consult-audit').click();
  await page.waitForSelector('#consult-list li[data-consult-id="c-abc"] table', { timeout: 3_000 });
  assert.match(await item.textContent(), /created the consult/);
  assert.match(await item.locator('.consult-summary').getAttribute('href'), /^summary\.html\?id=c-abc/);
  await item.locator('.consult-end').click();
  await page.waitForSelector('#consult-list li[data-consult-id="c-abc"] .pill[data-status="ended"]', { timeout: 3_000 });
  assert.ok(requests.some((r) => r.method === 'POST' && r.path === '/api/v1/consults/c-abc/end'));

  // Phone width: one column.
  await page.setViewportSize({ width: 390, height: 800 });
  const widths = await page.evaluate(() => [...document.querySelectorAll('.card')].filter((c) => !c.hidden).map((c) => c.getBoundingClientRect().width));
  assert.ok(widths.every((w) => w <= 390), `cards fit a phone: ${widths}`);
  await page.close();
});

test('a mute toggled while the socket was silently dead is sent again after the resume; the operator\'s mute made meanwhile is kept', { timeout: 30_000 }, async () => {
  const page = await browser.newPage('resume-mute');
  // A microphone and camera without devices, so there is something to mute.
  await page.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = async () => {
      const audio = new AudioContext().createMediaStreamDestination().stream.getAudioTracks()[0];
      const canvas = Object.assign(document.createElement('canvas'), { width: 64, height: 36 });
      canvas.getContext('2d').fillRect(0, 0, 64, 36);
      return new MediaStream([audio, canvas.captureStream(5).getVideoTracks()[0]]);
    };
  });
  const sockets = [];
  let youOnResume = you('p2', 'Chị Hoa', 'patient');
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const entry = { ws, sent: [] };
    sockets.push(entry);
    ws.onMessage((data) => {
      const msg = JSON.parse(String(data));
      entry.sent.push(msg);
      if (msg.type !== 'join') return;
      ws.send(JSON.stringify({ v: 1, type: 'joined', participant_id: 'p2', room: 'c-1', title: 'T', you: msg.resume ? youOnResume : you('p2', 'Chị Hoa', 'patient'),
        participants: [you('p1', 'Phòng khám', 'clinic')], video_layers: layers, resume_token: 'token-1', resumed: !!msg.resume }));
    });
  });
  await page.goto(`${server.baseUrl}/?invite=aaa.bbb.ccc&lang=en`);
  await page.waitForSelector('#call-screen', { state: 'visible', timeout: 5_000 });
  const mutes = (i) => sockets[i].sent.filter((m) => m.type === 'mute' && m.kind === 'audio');

  // The socket is dead but nobody knows yet: the toggle goes out and is never echoed.
  await waitFor(() => page.evaluate(() => window.consult.pc !== null), { timeoutMs: 5_000, what: 'the call' });
  await page.evaluate(() => window.consult.toggleMute('audio'));
  await waitFor(() => mutes(0).length === 1, { timeoutMs: 5_000, what: 'the mute on the first socket' });
  await sockets[0].ws.close({ code: 1006 });
  await waitFor(() => page.evaluate(() => window.consult.resumes === 1), { timeoutMs: 8_000, what: 'resumed' });
  await waitFor(() => mutes(1).length === 1, { timeoutMs: 5_000, what: 'the mute sent again after the resume' });
  assert.equal(mutes(1)[0].muted, true);

  // Echoed, the toggle is confirmed: the next resume sends nothing again.
  sockets[1].ws.send(JSON.stringify({ v: 1, type: 'mute_changed', participant_id: 'p2', kind: 'audio', muted: true }));
  await new Promise((r) => setTimeout(r, 200));
  youOnResume = { ...you('p2', 'Chị Hoa', 'patient'), audio_muted: true };
  await sockets[1].ws.close({ code: 1006 });
  await waitFor(() => page.evaluate(() => window.consult.resumes === 2), { timeoutMs: 8_000, what: 'resumed twice' });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(mutes(2).length, 0, 'a confirmed mute is not sent again');

  // We unmuted ourselves (confirmed); the operator muted us while the socket was dead: the
  // server's state wins.
  await page.evaluate(() => window.consult.toggleMute('audio'));
  sockets[2].ws.send(JSON.stringify({ v: 1, type: 'mute_changed', participant_id: 'p2', kind: 'audio', muted: false }));
  await waitFor(() => page.evaluate(() => window.consult.muted.audio === false), { timeoutMs: 5_000, what: 'unmuted' });
  youOnResume = { ...you('p2', 'Chị Hoa', 'patient'), audio_muted: true };
  await sockets[2].ws.close({ code: 1006 });
  await waitFor(() => page.evaluate(() => window.consult.resumes === 3), { timeoutMs: 8_000, what: 'resumed three times' });
  await waitFor(() => page.evaluate(() => window.consult.muted.audio === true), { timeoutMs: 5_000, what: 'the operator\'s mute adopted' });
  assert.equal(mutes(3).length, 0, 'no unmute sent over the operator\'s mute');
  await page.close();
});
