// Test harness: starts the consult-sfu binary, launches headless Chromium bots, reads the
// server's CPU and memory from /proc. Used by tests/*.test.mjs.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO = resolve(WEB_ROOT, '..');
export const SERVER_BIN = process.env.CONSULT_SFU_BIN || join(REPO, 'target/release/consult-sfu');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const READY_TIMEOUT_MS = 30_000;
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Flags measured to work on this machine (shared/TESTBED.md). */
export const BASE_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  '--use-fake-ui-for-media-stream',
];
export const FAKE_MEDIA_FLAGS = ['--use-fake-device-for-media-stream'];

/** Keeps the last `max` lines of a stream, so failures can show the server's log. */
function tail(max) {
  const lines = [];
  return {
    push(chunk) {
      for (const line of chunk.split('\n')) if (line) lines.push(line);
      while (lines.length > max) lines.shift();
    },
    text: () => lines.join('\n'),
  };
}

/** A fixed operator key for invite-mode tests (16+ characters, as the server requires). */
export const TEST_OPERATOR = { clinic: 'Phòng khám Bắc Hà', key: 'test-operator-key-0123456789abcdef' };

function tomlString(s) {
  return JSON.stringify(String(s)); // a JSON string is a valid TOML basic string for these values
}

/**
 * Starts the server and resolves once it printed `CONSULT_READY http=ADDR udp=ADDR`.
 * Each server gets its own temporary consult database (removed by stop()).
 * - default (`openJoin: true`): join by room name too (`CONSULT_ALLOW_OPEN_JOIN=1`), for the
 *   media tests that use `?room=&name=&role=` links;
 * - `{ openJoin: false, operators: [TEST_OPERATOR] }`: invites only, with operators written to a
 *   TOML config file (`[[operators]] clinic, key`) passed with `--config`.
 * @returns {Promise<{proc, pid, http: string, udp: string, baseUrl: string, operatorLink: string|null,
 *   log: () => string, stop: () => Promise<void>}>}
 */
export async function startServer({
  openJoin = true,
  operators = null,
  env = {},
  dataDir: givenDir = null,
  httpAddr = '127.0.0.1:0',
  udpAddr = '127.0.0.1:0',
} = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`server binary not found at ${SERVER_BIN}: build it (cargo build --release) or set CONSULT_SFU_BIN`);
  }
  // A given dataDir outlives the server (restart tests start a second one on it).
  const dataDir = givenDir ?? mkdtempSync(join(tmpdir(), 'consult-db-'));
  const args = ['--http-addr', httpAddr, '--udp-addr', udpAddr, '--web-root', WEB_ROOT];
  if (operators?.length) {
    const file = join(dataDir, 'consult.toml');
    const text = operators.map((o) => `[[operators]]\nclinic = ${tomlString(o.clinic)}\nkey = ${tomlString(o.key)}\n`).join('\n');
    writeFileSync(file, text);
    args.push('--config', file);
  }
  const childEnv = { ...process.env, CONSULT_DB_PATH: join(dataDir, 'consults.sqlite'), ...env };
  if (openJoin) childEnv.CONSULT_ALLOW_OPEN_JOIN = '1';
  else delete childEnv.CONSULT_ALLOW_OPEN_JOIN;
  const proc = spawn(SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  const log = tail(200);
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => log.push(d));

  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  /** Stops the server with `signal`; resolves to how long it took to exit (ms). */
  const stop = async ({ signal = 'SIGTERM' } = {}) => {
    const t0 = performance.now();
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    const ms = performance.now() - t0;
    if (!givenDir) rmSync(dataDir, { recursive: true, force: true });
    return ms;
  };

  let stdoutBuf = '';
  let operatorLink = null;
  const findOperatorLink = (text) => {
    operatorLink ??= /(\S+\/operator\.html#key=\S+)/.exec(text)?.[1] ?? null;
  };
  proc.stderr.on('data', findOperatorLink);
  const ready = new Promise((res, rej) => {
    proc.stdout.on('data', (d) => {
      log.push(d);
      findOperatorLink(d);
      stdoutBuf += d;
      const m = /^CONSULT_READY http=(\S+) udp=(\S+)\s*$/m.exec(stdoutBuf);
      if (m) res({ http: m[1], udp: m[2] });
      if (stdoutBuf.length > 1 << 20) stdoutBuf = stdoutBuf.slice(-4096);
    });
    proc.once('error', rej);
    exited.then(({ code, signal }) =>
      rej(new Error(`server exited before it was ready (code ${code}, signal ${signal}):\n${log.text()}`)),
    );
  });
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(
      () => rej(new Error(`server printed no CONSULT_READY line within ${READY_TIMEOUT_MS / 1000} s:\n${log.text()}`)),
      READY_TIMEOUT_MS,
    );
  });
  try {
    const { http, udp } = await Promise.race([ready, timeout]);
    return {
      proc,
      pid: proc.pid,
      http,
      udp,
      baseUrl: `http://${http}`,
      get operatorLink() {
        return operatorLink;
      },
      log: log.text,
      /** Resolves to `{ code, signal }` when the process exits. */
      exited,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** CPU seconds (user + system) and peak RSS (KiB) of a live process, from /proc. */
export function procUsage(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime (14), stime (15)
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return { cpuSeconds, peakRssKiB: hwm ? Number(hwm[1]) : NaN };
  } catch {
    return null;
  }
}

/** One headless Chromium instance with a fresh profile; close() also removes the profile. */
export async function launchBrowser({ fakeMedia = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'consult-e2e-'));
  const args = [...BASE_FLAGS, ...(fakeMedia ? FAKE_MEDIA_FLAGS : [])];
  let context;
  try {
    context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM_BIN, headless: true, args });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    async newPage(label) {
      const page = context.pages().find((p) => p.url() === 'about:blank' && !p.__used) ?? (await context.newPage());
      page.__used = true;
      page.__logs = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') page.__logs.push(`[${label}] ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => page.__logs.push(`[${label}] pageerror: ${e.message}`));
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function joinUrl(baseUrl, { room, name, role, lang = 'vi' }) {
  const q = new URLSearchParams({ room, name, role, lang });
  return `${baseUrl}/?${q}`;
}

/**
 * Calls the consult API from node with an operator key; resolves with {status, body}.
 * Throws on a non-2xx status unless `expect` names it.
 */
export async function apiCall(baseUrl, key, path, { method = 'GET', body, expect } = {}) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${baseUrl}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  if (!res.ok && res.status !== expect) throw new Error(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return { status: res.status, body: json };
}

/** The invite link of a role (the first one) from a create/get consult response, made absolute. */
export function inviteLink(baseUrl, invites, { role, name } = {}) {
  const inv = invites.find((i) => (!role || i.role === role) && (!name || i.name === name));
  if (!inv) throw new Error(`no invite for ${role ?? ''} ${name ?? ''}: ${JSON.stringify(invites)}`);
  const url = new URL(inv.link, baseUrl);
  // The server may build links from its public URL; the tests talk to the address it listens on.
  const base = new URL(baseUrl);
  url.protocol = base.protocol;
  url.host = base.host;
  return url.href;
}

export function randomRoom(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value, or throws with `describe()` after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs, intervalMs = 250, what, describe }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      const extra = describe ? `\n${await describe()}` : '';
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${extra}`);
    }
    await sleep(intervalMs);
  }
}
