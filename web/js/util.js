// Small helpers shared by the client's modules: DOM building, ids and times.

/**
 * el builds an element. Text always goes in as text (textContent or a text node), never as
 * HTML: nothing a server or another user sends can become markup.
 *
 *   el('p', {class: 'x', 'aria-label': 'y', onclick: fn}, 'text', childNode, …)
 */
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

const timeFmt = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit'});
const dateFmt = new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short'});
const longDateFmt = new Intl.DateTimeFormat(undefined, {weekday: 'long', day: 'numeric', month: 'long', year: 'numeric'});
const fullFmt = new Intl.DateTimeFormat(undefined, {dateStyle: 'full', timeStyle: 'short'});

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** shortTime: the clock time for today, the date otherwise (the conversation list's style). */
export function shortTime(d, now = new Date()) {
  if (!d) return '';
  return sameDay(d, now) ? timeFmt.format(d) : dateFmt.format(d);
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
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (sameDay(d, y)) return 'Yesterday';
  return longDateFmt.format(d);
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

/** initials for an avatar: the first letter of the first two name parts. */
export function initials(name) {
  const parts = name.split(/[_\s]+/).filter(Boolean);
  const letters = parts.slice(0, 2).map((p) => [...p][0]);
  return (letters.join('') || '?').toUpperCase();
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
