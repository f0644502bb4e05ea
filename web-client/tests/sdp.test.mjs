// Unit test of the client's one SDP edit: Opus DTX asked for in the server's answer.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { withOpusDtx } from '../js/call.js';

test('withOpusDtx adds usedtx=1 to every Opus fmtp line, once', () => {
  const sdp = [
    'v=0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111 63',
    'a=rtpmap:111 opus/48000/2',
    'a=fmtp:111 minptime=10;useinbandfec=1',
    'a=rtpmap:63 red/48000/2',
    'a=fmtp:63 111/111',
    'm=video 9 UDP/TLS/RTP/SAVPF 96',
    'a=rtpmap:96 VP8/90000',
    '',
  ].join('\r\n');
  const out = withOpusDtx(sdp);
  assert.match(out, /a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n/);
  assert.match(out, /a=fmtp:63 111\/111\r\n/, 'RED untouched');
  assert.equal(withOpusDtx(out), out, 'idempotent');
  const explicit = sdp.replace('useinbandfec=1', 'useinbandfec=1;usedtx=0');
  assert.equal(withOpusDtx(explicit), explicit, 'an explicit choice is kept');
});
