// A server restart mid-consult: three Chromium participants joined by invite see and hear each
// other; the server is stopped with SIGTERM (it tells everyone to rejoin, refuses joins, flushes
// the audit trail and exits within 5 s), started again on the same ports and database, and
// everyone must see and hear everyone again within 10 s of it being up; then the same with
// SIGKILL (no goodbye: the clients notice the lost connection). The audit trail shows all three
// sessions. Run: npm test (needs target/release/consult-sfu and /usr/bin/chromium).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_OPERATOR, apiCall, inviteLink, launchBrowser, startServer } from './lib/harness.mjs';
import { everyoneSeesEveryone, freePort } from './lib/consult.mjs';

const BACK_WITHIN_MS = 10_000;
const EXIT_WITHIN_MS = 5_000;

test('a server restart (SIGTERM, then SIGKILL) mid-consult: everyone is back within 10 s', { timeout: 240_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'consult-restart-'));
  const httpAddr = `127.0.0.1:${await freePort('tcp')}`;
  const udpAddr = `127.0.0.1:${await freePort('udp')}`;
  const start = () => startServer({ openJoin: false, operators: [TEST_OPERATOR], dataDir, httpAddr, udpAddr });
  let server = await start();
  const bots = [];
  const describe = async () => {
    const out = [];
    for (const b of bots) {
      const log = await b.page.evaluate(() => window.consult?.log?.slice(-15).join('\n    ')).catch((e) => String(e));
      out.push(`  ${b.name}:\n    ${log}`);
    }
    out.push(`  server log (tail):\n${server.log().split('\n').slice(-20).join('\n')}`);
    return out.join('\n');
  };
  try {
    const api = (path, opts) => apiCall(server.baseUrl, TEST_OPERATOR.key, path, opts);
    const { status, body } = await api('/consults', {
      method: 'POST',
      body: {
        title: 'Hội chẩn qua khởi động lại',
        participants: [
          { name: 'BS. Lan', role: 'specialist' },
          { name: 'Chị Hoa', role: 'patient', lobby: false },
        ],
      },
    });
    assert.equal(status, 201);
    for (const role of ['clinic', 'specialist', 'patient']) {
      const browser = await launchBrowser();
      const page = await browser.newPage();
      await page.goto(inviteLink(server.baseUrl, body.invites, { role }));
      bots.push({ name: role, browser, page });
    }
    await everyoneSeesEveryone(bots, 40_000, 'everyone to see and hear everyone', describe);

    const timings = [];
    for (const signal of ['SIGTERM', 'SIGKILL']) {
      const exitMs = await server.stop({ signal });
      if (signal === 'SIGTERM') {
        const { code } = await server.exited;
        assert.equal(code, 0, 'a clean exit on SIGTERM');
        assert.ok(exitMs < EXIT_WITHIN_MS, `exited in ${Math.round(exitMs)} ms`);
        for (const b of bots) {
          const log = await b.page.evaluate(() => window.consult.log.join('\n'));
          assert.match(log, /closed server_restart/, `${b.name} was told the server restarts`);
        }
      }
      server = await start();
      const up = performance.now();
      await everyoneSeesEveryone(bots, BACK_WITHIN_MS, `everyone back after ${signal}`, describe);
      const backMs = performance.now() - up;
      timings.push({ signal, exitMs: Math.round(exitMs), backMs: Math.round(backMs) });
      console.log(`restart ${signal}: server exited in ${Math.round(exitMs)} ms; all three see and hear each other ${(backMs / 1000).toFixed(1)} s after it was up`);
    }

    // Three sessions each in the audit trail: joined three times, and left once for the
    // graceful restart (the killed server wrote nothing at its end, by definition).
    const consultId = body.consult.id;
    const trail = await apiCall(server.baseUrl, TEST_OPERATOR.key, `/consults/${consultId}/audit`);
    assert.equal(trail.status, 200);
    for (const name of [TEST_OPERATOR.clinic, 'BS. Lan', 'Chị Hoa']) {
      const mine = trail.body.events.filter((e) => e.actor === name);
      const joined = mine.filter((e) => e.action === 'joined').length;
      assert.ok(joined >= 3, `${name} joined ${joined} times: ${JSON.stringify(mine)}`);
      assert.ok(
        mine.some((e) => e.action === 'left' && /restart/.test(e.detail ?? '')),
        `${name} left for the restart: ${JSON.stringify(mine)}`,
      );
    }
    assert.equal(timings.length, 2);
  } finally {
    for (const b of bots) await b.browser.close().catch(() => {});
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
