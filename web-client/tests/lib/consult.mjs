// Shared by the multi-process browser tests (restart, cluster): free ports for servers that
// must be started on known ports, and "everyone sees and hears everyone" from getStats.

import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { waitFor } from './harness.mjs';
import { inboundByMid } from './stats.mjs';

/** A port the kernel just gave out and released (TCP or UDP), for a server that restarts. */
export function freePort(kind) {
  return new Promise((resolve, reject) => {
    if (kind === 'udp') {
      const s = createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    } else {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    }
  });
}

/** Per remote participant: video frames decoded and audio samples received so far. */
export async function receivedByRemote(page) {
  const out = {};
  for (const s of Object.values(await inboundByMid(page))) {
    if (!s.from) continue;
    const r = (out[s.from] ??= { video: 0, audio: 0 });
    if (s.kind === 'video') r.video += s.framesDecoded;
    else r.audio += s.samples;
  }
  return out;
}

/** Resolves once every bot receives growing video and audio from two remote participants. */
export async function everyoneSeesEveryone(bots, timeoutMs, what, describe) {
  const prev = new Map();
  await waitFor(
    async () => {
      let all = true;
      for (const b of bots) {
        const cur = await receivedByRemote(b.page).catch(() => ({}));
        const before = prev.get(b.name) ?? {};
        const growing = Object.entries(cur).filter(
          ([id, r]) => before[id] && r.video > before[id].video && r.audio > before[id].audio,
        );
        prev.set(b.name, cur);
        if (growing.length < 2) all = false;
      }
      return all;
    },
    { timeoutMs, intervalMs: 500, what, describe },
  );
}

