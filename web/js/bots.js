// Bot answers (@giphy, @forecast): messages of kind "bot" whose content is a JSON object from the
// server (DESIGN §3.2, Bots). A GIF shows inline as an image with GIPHY's attribution, a forecast
// as a small card, a failure as its text. Everything is built with el() (text nodes and
// attributes), never HTML; URLs are used only when they are http(s).

import {el} from './util.js';

/** parseBot reads a bot message's answer, or null if it is not one. */
export function parseBot(record) {
  if (!record || record.kind !== 'bot') return null;
  try {
    const a = JSON.parse(record.content);
    return a && typeof a === 'object' && typeof a.bot === 'string' ? a : null;
  } catch {
    return null;
  }
}

/** botSummary is one line of text for a bot message (conversation list, notifications). */
export function botSummary(record) {
  const a = parseBot(record);
  if (!a) return record.content;
  if (a.type === 'gif') return `GIF: ${str(a.text)}`;
  return str(a.text);
}

function str(v) {
  return typeof v === 'string' ? v : '';
}

function httpURL(v) {
  if (typeof v !== 'string') return null;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

function dim(v) {
  return Number.isInteger(v) && v > 0 && v <= 1000 ? v : null;
}

/** botContent is the bubble's content for a bot message. */
export function botContent(record) {
  const a = parseBot(record);
  if (!a) return el('p', {class: 'text'}, record.content);
  const url = httpURL(a.url);
  if (a.type === 'gif' && url) return gifCard(a, url);
  if (a.type === 'forecast' && Array.isArray(a.days)) return forecastCard(a);
  return el('p', {class: 'text bot-error'}, str(a.text) || 'The bot could not answer.');
}

function attribution(a) {
  const text = str(a.attribution);
  if (!text) return null;
  const link = httpURL(a.link);
  return link ? el('a', {class: 'bot-attr', href: link, target: '_blank', rel: 'noopener noreferrer nofollow'}, text) :
    el('span', {class: 'bot-attr'}, text);
}

function gifCard(a, url) {
  const w = dim(a.width);
  const h = dim(a.height);
  const img = el('img', {
    src: url, alt: str(a.text) || `GIF for ${str(a.query)}`, loading: 'lazy', referrerpolicy: 'no-referrer',
    width: w, height: h, decoding: 'async',
  });
  return el('figure', {class: 'bot-card bot-gif'}, img,
    el('figcaption', {}, el('span', {class: 'bot-title'}, str(a.text)), ' ', attribution(a)));
}

function forecastCard(a) {
  const days = a.days.slice(0, 7).map((d, i) => el('li', {},
    el('span', {class: 'fc-day'}, dayName(str(d.date), i)),
    el('span', {class: 'fc-sum'}, str(d.summary)),
    el('span', {class: 'fc-temp'}, `${num(d.min)}–${num(d.max)} °C`)));
  return el('div', {class: 'bot-card bot-forecast'},
    el('p', {class: 'fc-place'}, str(a.place) || str(a.query)),
    el('ul', {class: 'fc-days'}, days),
    attribution(a));
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? String(Math.round(v)) : '?';
}

function dayName(date, i) {
  if (i === 0) return 'Today';
  if (i === 1) return 'Tomorrow';
  const d = new Date(`${date}T12:00:00`);
  return Number.isNaN(d.getTime()) ? date : d.toLocaleDateString(undefined, {weekday: 'long'});
}
