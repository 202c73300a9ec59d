// Small helpers shared by the client's modules: DOM building, ids and times.

/**
 * el builds an element. Text always goes in as text (textContent or a text node), never as
 * HTML: nothing a server or another user sends can become markup.
 *
 *   el('p', {class: 'x', 'aria-label': 'y', onclick: fn}, 'text', childNode, …)
 */
/**
 * visibleText drops the characters that change how text is shown without being seen: controls,
 * bidirectional controls (U+202E shows "pay\u202Efdp.exe" as "payexe.pdf") and other invisible
 * format characters, but for the zero-width joiner and non-joiner that scripts and emoji need.
 * For names (files, conversations), which the server refuses with them (validate.go); message
 * bodies keep them and are shown with dir="auto", which isolates them.
 */
export function visibleText(s) {
  return String(s).replace(/(?![\u200C\u200D])[\p{Cc}\p{Cf}]/gu, '');
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      node.className = value;
    } else if (name === 'dataset') {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** icon builds a small inline SVG icon (24×24 view box) from path data; it is decoration, so
 * it is hidden from screen readers: the element around it carries the words. */
/** setText, setData, setAttr and setHidden change a node only if the value differs: writing
 * the same value still invalidates style and layout (on body, the whole page's), which a send
 * would otherwise pay several times over. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

export function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

export function icon(paths, cls = 'ico') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', cls);
  for (const d of [paths].flat()) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

/** ICONS: path data of the client's icons. */
export const ICONS = {
  // A clock face with its hands at ten past: "waiting to be sent".
  clock: ['M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z',
    'M11 6h2v5.4l3.6 2.1-1 1.7L11 12.6z'],
};

/** randomId returns n random bytes as URL-safe base64 (works without a secure context). */
export function randomId(n = 16) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** codePoints counts characters the way the server does (Unicode code points, not UTF-16 units). */
export function codePoints(s) {
  let n = 0;
  for (const _ of s) n++; // eslint-disable-line no-unused-vars
  return n;
}

/**
 * parseWireTime turns a wire time (2006-01-02T15:04:05.000000Z, microseconds) into a Date.
 * The fraction is cut to milliseconds first, the precision Date has.
 */
export function parseWireTime(s) {
  if (!s) return null;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,3})?\d*Z$/.exec(s);
  const d = new Date(m ? `${m[1]}${m[2] || ''}Z` : s);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** wireTime formats a Date as a wire time (the server accepts the microsecond form). */
export function wireTime(d) {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

// Clock times are always two-digit hours and minutes ("06:12", "18:40"): the same width in
// every locale, so times line up, and never "6:12 AM" next to "06:12".
const timeFmt = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'});
const dateFmt = new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short'});
const longDateFmt = new Intl.DateTimeFormat(undefined, {weekday: 'long', day: 'numeric', month: 'long', year: 'numeric'});
const fullFmt = new Intl.DateTimeFormat(undefined, {dateStyle: 'full', timeStyle: 'short'});

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

function yesterdayOf(now) {
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  return y;
}

/** shortTime: the clock time for today, "Yesterday", or the date (the conversation list's style). */
export function shortTime(d, now = new Date()) {
  if (!d) return '';
  if (sameDay(d, now)) return timeFmt.format(d);
  return sameDay(d, yesterdayOf(now)) ? 'Yesterday' : dateFmt.format(d);
}

export function clockTime(d) {
  return d ? timeFmt.format(d) : '';
}

export function fullTime(d) {
  return d ? fullFmt.format(d) : '';
}

/** dayLabel names a message day: Today, Yesterday, or the date. */
export function dayLabel(d, now = new Date()) {
  if (sameDay(d, now)) return 'Today';
  if (sameDay(d, yesterdayOf(now))) return 'Yesterday';
  return longDateFmt.format(d);
}

const weekdayFmt = new Intl.DateTimeFormat(undefined, {weekday: 'long'});
const laterFmt = new Intl.DateTimeFormat(undefined, {weekday: 'short', day: 'numeric', month: 'short'});
const laterYearFmt = new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short', year: 'numeric'});

/** whenLabel names a coming time, briefly: "Today, 18:30", "Tomorrow, 09:00", "Friday, 09:00",
 * "Mon 3 Mar, 09:00", "3 Mar 2027, 09:00". */
export function whenLabel(d, now = new Date()) {
  if (!d) return '';
  const clock = timeFmt.format(d);
  const tomorrow = new Date(now);
  tomorrow.setDate(now.getDate() + 1);
  const week = new Date(now);
  week.setDate(now.getDate() + 6);
  week.setHours(23, 59, 59, 999);
  let day;
  if (sameDay(d, now)) day = 'Today';
  else if (sameDay(d, tomorrow)) day = 'Tomorrow';
  else if (d > now && d <= week) day = weekdayFmt.format(d);
  else if (d.getFullYear() === now.getFullYear()) day = laterFmt.format(d);
  else day = laterYearFmt.format(d);
  return `${day}, ${clock}`;
}

/** localInputValue formats a Date for an <input type="datetime-local"> (local time, minutes). */
export function localInputValue(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function dayKey(d) {
  return d ? `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}` : 'pending';
}

/** hue picks a stable colour for a username, so that people are recognisable at a glance. */
export function hue(name) {
  let h = 0;
  for (const ch of name.toUpperCase()) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

/** initials for an avatar: the first letters of the name's first two words, where a word is a
 * run of letters ("alice_smith" → "AS", "alice_3" → "A", not "A3"). A name without letters
 * shows its first character. */
export function initials(name) {
  const words = name.match(/\p{L}+/gu) || [];
  const letters = words.slice(0, 2).map((w) => [...w][0]);
  return (letters.join('') || [...name.trim()][0] || '?').toUpperCase();
}

/** listNames writes names as prose: "a", "a and b", "a, b and c". */
export function listNames(names) {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** sameUser compares usernames as the server does: without regard to case. */
export function sameUser(a, b) {
  return typeof a === 'string' && typeof b === 'string' && a.toUpperCase() === b.toUpperCase();
}

/** parseNames splits free text ("bob, carol dave") into usernames. */
export function parseNames(text) {
  return text.split(/[\s,;]+/).map((s) => s.replace(/^@/, '')).filter(Boolean);
}
