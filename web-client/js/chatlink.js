// Connects the chat panel (chat.js) to the session's data channel (consultchannel.js): the
// page's one ChatPanel, one ConsultChannel per peer connection, and sending images. Apart
// because the connection lifecycle only has to attach it, not understand it.

import { ChatPanel } from './chat.js';
import { ConsultChannel, imageProblem } from './consultchannel.js';
import { app, note } from './state.js';

export const chat = new ChatPanel({
  onSendText: (text) => app.session?.channel?.sendChat(text) ?? false,
  onSendImage: (file) => {
    sendImage(file).catch(() => {});
  },
  myId: () => app.participantId,
});

export function attachChannel(session, call) {
  const mine = (fn) => (...args) => {
    if (app.session === session) fn(...args);
  };
  session.channel = new ConsultChannel(call.dc, {
    onOpen: mine(() => note('data channel open')),
    onClose: mine(() => note('data channel closed')),
    onChat: mine((m) => {
      app.chatLog.push(m);
      chat.addChat(m);
    }),
    onIncomingStart: mine((img) => chat.incomingStart(img)),
    onIncomingProgress: mine((img) => chat.incomingProgress(img)),
    onIncomingDone: mine((img) => {
      const { id, from, sender, file, mime, size, sha256 } = img;
      app.receivedImages.push({ id, from, sender, file, mime, size, sha256 });
      note(`image received ${file} ${size} B`);
      chat.incomingDone(img);
    }),
    onIncomingAbort: mine((img) => chat.incomingAbort(img)),
    onOutgoingProgress: (img) => chat.outgoingProgress(img),
    onOutgoingDone: (img) => chat.outgoingDone(img),
    onOutgoingFailed: (img, code) => chat.outgoingFailed(img, code),
    onError: mine((m) => {
      note(`data channel error ${m.code}`);
      if (m.id == null) chat.note(m.code === 'forbidden' ? 'error.forbidden' : 'error.generic', { code: m.code });
    }),
  });
}

/** Sends an image to everyone; resolves with {id, sha256, size} once all chunks were relayed. */
export async function sendImage(file) {
  const problem = imageProblem(file);
  if (problem) {
    chat.note(problem);
    throw new Error(problem);
  }
  const ch = app.session?.channel;
  if (!ch?.open) {
    chat.note('chat.notReady');
    throw new Error('data channel not open');
  }
  chat.note(null);
  let record;
  const img = await ch.sendImage(file, (i) => {
    record = { id: i.id, file: i.file, size: i.size, chunks: i.chunks, get acked() { return i.acked; }, get done() { return i.done; }, get failed() { return i.failed; }, get sha256() { return i.sha256; } };
    app.sentImages.push(record);
    chat.outgoingStart(i);
  });
  note(`image sent ${img.file} ${img.size} B`);
  return { id: img.id, sha256: img.sha256, size: img.size };
}
