// Three nodes sharing a redis-server (started here on a free loopback port): a consult whose
// three Chromium participants open their links on three different nodes runs on one node (the
// two others are redirected there by the server) and everyone sees and hears everyone. Then,
// behind a load balancer (a TCP proxy here, as a hospital would put one in front of its nodes'
// HTTP), the consult's node is killed (SIGKILL) and the consult must run again on another node
// with everyone seeing and hearing everyone, with nobody pressing anything.
// Run: npm test (needs target/release/consult-sfu, /usr/bin/chromium and redis-server).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinUrl, launchBrowser, randomRoom, startServer, waitFor } from './lib/harness.mjs';
import { everyoneSeesEveryone, freePort } from './lib/consult.mjs';

// Shared by the nodes, as in a real cluster (invites and resume tokens read by every node).
const SECRET = 'cluster browser test secret, 32+ characters';

/**
 * redis-server on a free port. The port is found by binding port 0 and letting it go, so
 * another test may take it first: then this redis-server exits at once (address in use) while
 * the port answers for the other one. Checked, and tried again on a new port.
 */
async function startRedis() {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort('tcp');
    const dir = mkdtempSync(join(tmpdir(), 'consult-redis-'));
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    let exited = false;
    proc.once('exit', () => { exited = true; });
    const listening = () => new Promise((res) => {
      if (exited) return res(true);
      const s = connect(port, '127.0.0.1', () => { s.end(); res(true); });
      s.once('error', () => res(false));
    });
    await waitFor(listening, { timeoutMs: 5_000, intervalMs: 50, what: `redis-server on ${port}` });
    await new Promise((r) => setTimeout(r, 150));
    if (exited) {
      rmSync(dir, { recursive: true, force: true });
      continue;
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      stop() {
        proc.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error('redis-server did not start on a free port in 5 tries');
}

/**
 * A TCP load balancer on a free port: each connection goes to the next node that accepts it
 * (round robin, skipping dead ones), as an L4 balancer with health checks would.
 */
async function startBalancer(nodes) {
  let next = 0;
  const sockets = new Set();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const tryNode = (attempt) => {
      if (attempt >= nodes.length) return client.destroy();
      const node = nodes[next++ % nodes.length];
      const [host, port] = node.http.split(':');
      const upstream = connect(Number(port), host);
      upstream.once('error', () => tryNode(attempt + 1));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        sockets.add(upstream);
        upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryNode(0);
  });
  const port = await new Promise((res) => server.listen(0, '127.0.0.1', () => res(server.address().port)));
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    stop() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function metric(node, name) {
  const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

test('a consult whose participants start on three nodes runs on one; everyone sees and hears everyone', { timeout: 150_000 }, async () => {
  const redis = await startRedis();
  const nodes = [];
  const bots = [];
  const describe = async () => {
    const out = [];
    for (const b of bots) {
      const log = await b.page.evaluate(() => window.consult?.log?.slice(-12).join('\n    ')).catch((e) => String(e));
      out.push(`  ${b.name} (entered at ${b.entry}):\n    ${log}`);
    }
    for (const [i, n] of nodes.entries()) out.push(`  node n${i + 1} log (tail):\n${n.log().split('\n').slice(-10).join('\n')}`);
    return out.join('\n');
  };
  try {
    for (let i = 1; i <= 3; i++) {
      const port = await freePort('tcp');
      nodes.push(await startServer({
        httpAddr: `127.0.0.1:${port}`,
        env: { CONSULT_REDIS_URL: redis.url, CONSULT_NODE_ID: `n${i}`, CONSULT_ADVERTISE_URL: `http://127.0.0.1:${port}`, CONSULT_TOKEN_SECRET: SECRET },
      }));
    }
    // A heartbeat from each, so every node is in the directory and knows the others' origins.
    await new Promise((r) => setTimeout(r, 1500));

    const room = randomRoom('cluster');
    const who = [['clinic', 'Phòng khám Bắc Hà'], ['specialist', 'BS. Lan'], ['patient', 'Chị Hoa']];
    for (const [i, [role, name]] of who.entries()) {
      const browser = await launchBrowser();
      const page = await browser.newPage();
      await page.goto(joinUrl(nodes[i].baseUrl, { room, name, role }));
      bots.push({ name: role, entry: `n${i + 1}`, browser, page });
    }
    const t0 = performance.now();
    await everyoneSeesEveryone(bots, 40_000, 'everyone to see and hear everyone across nodes', describe);
    console.log(`# cluster: all three see and hear each other ${((performance.now() - t0) / 1000).toFixed(1)} s after the pages opened`);

    const rooms = await Promise.all(nodes.map((n) => metric(n, 'consult_rooms')));
    const participants = await Promise.all(nodes.map((n) => metric(n, 'consult_participants')));
    const redirects = await Promise.all(nodes.map((n) => metric(n, 'consult_cluster_redirects_total')));
    console.log(`# cluster: rooms per node ${rooms}, participants ${participants}, redirects ${redirects}`);
    assert.deepEqual(rooms.filter((r) => r === 1).length, 1, `one node holds the consult: ${rooms}`);
    assert.equal(participants.reduce((a, b) => a + b, 0), 3, `all three on that node: ${participants}`);
    const home = rooms.indexOf(1);
    assert.equal(participants[home], 3);
    for (const b of bots) {
      const log = await b.page.evaluate(() => window.consult.log.join('\n'));
      const cameElsewhere = b.entry !== `n${home + 1}`;
      assert.equal(/redirect -> /.test(log), cameElsewhere, `${b.name} entered at ${b.entry}, consult on n${home + 1}:\n${log}`);
    }
  } finally {
    for (const b of bots) await b.browser.close().catch(() => {});
    for (const n of nodes) await n.stop();
    redis.stop();
  }
});

test('behind a load balancer, the consult\'s node is killed: the consult runs again on another node by itself', { timeout: 180_000 }, async () => {
  const redis = await startRedis();
  const nodes = [];
  const bots = [];
  let balancer = null;
  const describe = async () => {
    const out = [];
    for (const b of bots) {
      const log = await b.page.evaluate(() => window.consult?.log?.slice(-15).join('\n    ')).catch((e) => String(e));
      out.push(`  ${b.name}:\n    ${log}`);
    }
    for (const [i, n] of nodes.entries()) out.push(`  node n${i + 1} log (tail):\n${n.log().split('\n').slice(-8).join('\n')}`);
    return out.join('\n');
  };
  try {
    for (let i = 1; i <= 3; i++) {
      const port = await freePort('tcp');
      nodes.push(await startServer({
        httpAddr: `127.0.0.1:${port}`,
        env: { CONSULT_REDIS_URL: redis.url, CONSULT_NODE_ID: `n${i}`, CONSULT_ADVERTISE_URL: `http://127.0.0.1:${port}`, CONSULT_TOKEN_SECRET: SECRET },
      }));
    }
    balancer = await startBalancer(nodes);
    await new Promise((r) => setTimeout(r, 1500));

    const room = randomRoom('failover');
    for (const [role, name] of [['clinic', 'Phòng khám Bắc Hà'], ['specialist', 'BS. Lan'], ['patient', 'Chị Hoa']]) {
      const browser = await launchBrowser();
      const page = await browser.newPage();
      await page.goto(joinUrl(balancer.baseUrl, { room, name, role }));
      bots.push({ name: role, browser, page });
    }
    await everyoneSeesEveryone(bots, 40_000, 'everyone to see and hear everyone', describe);
    const rooms = await Promise.all(nodes.map((n) => metric(n, 'consult_rooms')));
    const home = rooms.indexOf(1);
    assert.ok(home >= 0, `one node holds the consult: ${rooms}`);

    const killedAt = performance.now();
    await nodes[home].stop({ signal: 'SIGKILL' });
    await everyoneSeesEveryone(bots, 20_000, 'everyone to see and hear everyone after the node died', describe);
    const backS = (performance.now() - killedAt) / 1000;
    const live = nodes.filter((_, i) => i !== home);
    const after = await Promise.all(live.map((n) => metric(n, 'consult_participants')));
    console.log(`# cluster failover: node n${home + 1} killed; all three see and hear each other again ${backS.toFixed(1)} s later, on ${after.map((p, i) => `${p} participants`).join(' / ')} (live nodes)`);
    assert.ok(backS <= 10, `back within 10 s of the kill (took ${backS.toFixed(1)} s)`);
    assert.equal(after.filter((p) => p === 3).length, 1, `the consult runs on one live node: ${after}`);
  } finally {
    for (const b of bots) await b.browser.close().catch(() => {});
    for (const n of nodes) await n.stop();
    balancer?.stop();
    redis.stop();
  }
});
