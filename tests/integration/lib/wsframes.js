'use strict';
// WebSocket frames by hand, for tests that drive raw sockets where a
// library would hide the bytes: a masked client frame, and the server
// frames in what a socket received.

const crypto = require('node:crypto');

// A client frame: opcode OP, PAYLOAD (Buffer or string) masked with a
// random key, the length in its shortest form; FIN set unless fin is
// false, RSV1 (compressed, RFC 7692) when rsv1 is true.
function clientFrame(op, payload, { fin = true, rsv1 = false } = {}) {
  const data = Buffer.from(payload);
  const mask = crypto.randomBytes(4);
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | op;
  let head;
  if (data.length < 126) head = Buffer.from([b0, 0x80 | data.length]);
  else if (data.length <= 0xffff) head = Buffer.from([b0, 0x80 | 126, data.length >> 8, data.length & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(data.length), 2);
  }
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

// The complete frames at the start of BUF: {frames: [{op, fin, rsv1,
// masked, payload}], used: the bytes they take, rest: the bytes after
// them}.
function parseFrames(buf) {
  const frames = [];
  let i = 0;
  while (buf.length - i >= 2) {
    let len = buf[i + 1] & 0x7f;
    let h = 2;
    if (len === 126) { if (buf.length - i < 4) break; len = buf.readUInt16BE(i + 2); h = 4; }
    else if (len === 127) { if (buf.length - i < 10) break; len = Number(buf.readBigUInt64BE(i + 2)); h = 10; }
    if (buf.length - i - h < len) break;
    frames.push({ op: buf[i] & 0x0f, fin: !!(buf[i] & 0x80), rsv1: !!(buf[i] & 0x40), masked: !!(buf[i + 1] & 0x80),
      payload: buf.subarray(i + h, i + h + len) });
    i += h + len;
  }
  return { frames, used: i, rest: buf.length - i };
}

module.exports = { clientFrame, parseFrames };
