// The data-saver preference: receive every video at the lowest layer (PROTOCOL.md
// `set_preference`). Remembered in localStorage when the user changes it; `?datasaver=1` (or 0)
// in the link overrides it for that page (invite links, tests) without being stored.

const STORAGE_KEY = 'consult.dataSaver';

function readStored() {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return v === null ? null : v === '1';
  } catch {
    return null; // storage blocked (private mode, policy)
  }
}

/** The starting value: the link's `datasaver`, else the remembered choice, else off. */
export function initialDataSaver(params) {
  const fromLink = params.get('datasaver');
  if (fromLink !== null) return ['1', 'true', 'on', 'yes'].includes(fromLink.toLowerCase());
  return readStored() ?? false;
}

export function rememberDataSaver(on) {
  try {
    localStorage.setItem(STORAGE_KEY, on ? '1' : '0');
  } catch {
    /* not remembered; the switch still works for this page */
  }
}
