// Reading an address book in the browser: vCard (.vcf, versions 2.1 to 4.0) and CSV (as Google,
// Outlook, Apple and phones export it, or any table with a header row). Only what contact
// discovery needs is kept: each contact's name, e-mail addresses and phone numbers. Nothing here
// touches the DOM or the network.

const EMAIL_RE = /^[^\s@<>()",;:]+@[^\s@<>()",;:]+\.[^\s@<>()",;:]+$/;
const E164_RE = /^\+[1-9][0-9]{6,14}$/;

/** Contact: {name, emails: [string], phones: [string]} (phones as written in the file). */

/**
 * parseContacts reads a vCard or CSV text (which one is told by its content) into contacts.
 * Contacts without an e-mail address or a phone number are dropped.
 */
export function parseContacts(text) {
  const clean = String(text || '').replace(/^\uFEFF/, '');
  const contacts = /^\s*BEGIN:VCARD/im.test(clean) ? parseVCards(clean) : parseCSVContacts(clean);
  return contacts.filter((c) => c.emails.length || c.phones.length);
}

// vCard

/** parseVCards reads every BEGIN:VCARD … END:VCARD block. */
export function parseVCards(text) {
  // Unfold: a line that starts with a space or a tab continues the one before (RFC 6350 §3.2).
  // A quoted-printable value (vCard 2.1) continues after a line ending in "=".
  const raw = text.replace(/\r\n?/g, '\n').split('\n');
  const lines = [];
  for (const line of raw) {
    const prev = lines.length ? lines[lines.length - 1] : null;
    if (prev !== null && /^[ \t]/.test(line)) {
      lines[lines.length - 1] = prev + line.slice(1);
    } else if (prev !== null && /ENCODING=QUOTED-PRINTABLE/i.test(prev.split(':')[0]) && prev.endsWith('=')) {
      lines[lines.length - 1] = prev.slice(0, -1) + line;
    } else {
      lines.push(line);
    }
  }
  const out = [];
  let card = null;
  for (const line of lines) {
    const colon = valueStart(line);
    if (colon < 0) continue;
    const head = line.slice(0, colon);
    const params = head.split(';');
    const name = params[0].replace(/^[^.]*\./, '').toUpperCase(); // "item1.EMAIL" → EMAIL
    let value = line.slice(colon + 1);
    if (name === 'BEGIN' && /^VCARD$/i.test(value.trim())) {
      card = {fn: '', n: '', org: '', emails: [], phones: []};
      continue;
    }
    if (!card) continue;
    if (name === 'END' && /^VCARD$/i.test(value.trim())) {
      out.push({
        name: card.fn || card.n || card.org || card.emails[0] || card.phones[0] || '',
        emails: unique(card.emails, (e) => e.toLowerCase()),
        phones: unique(card.phones, (p) => p.replace(/[^+\d]/g, '')),
      });
      card = null;
      continue;
    }
    if (params.some((p) => /^ENCODING=QUOTED-PRINTABLE$/i.test(p) || /^QUOTED-PRINTABLE$/i.test(p))) {
      value = decodeQuotedPrintable(value, charsetOf(params));
    }
    switch (name) {
      case 'FN':
        card.fn = unescapeText(value).trim();
        break;
      case 'N': {
        // Family;Given;Additional;Prefix;Suffix → "Given Additional Family"
        const [family = '', given = '', additional = ''] = splitUnescaped(value, ';').map((s) => s.trim());
        card.n = [given, additional, family].filter(Boolean).join(' ');
        break;
      }
      case 'ORG':
        card.org = splitUnescaped(value, ';')[0].trim();
        break;
      case 'EMAIL': {
        const e = unescapeText(value).trim().replace(/^mailto:/i, '');
        if (e) card.emails.push(e);
        break;
      }
      case 'TEL': {
        const p = unescapeText(value).trim().replace(/^tel:/i, '').replace(/;.*$/, '');
        if (p) card.phones.push(p);
        break;
      }
      default:
        break;
    }
  }
  return out;
}

/** valueStart finds the colon that ends a content line's name and parameters (a parameter
 * value may be quoted and hold a colon). */
function valueStart(line) {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '"') quoted = !quoted;
    else if (ch === ':' && !quoted) return i;
  }
  return -1;
}

function charsetOf(params) {
  const p = params.find((x) => /^CHARSET=/i.test(x));
  return p ? p.slice(8).replace(/"/g, '') : 'utf-8';
}

function decodeQuotedPrintable(s, charset) {
  const bytes = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(s.charCodeAt(i) & 0xff);
    }
  }
  try {
    return new TextDecoder(charset).decode(new Uint8Array(bytes));
  } catch {
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes));
  }
}

/** unescapeText undoes vCard's text escapes: \n, \, \; \: and \\. */
function unescapeText(s) {
  return s.replace(/\\([nN,;:\\])/g, (_, c) => (c === 'n' || c === 'N' ? ' ' : c));
}

/** splitUnescaped splits on sep where it is not escaped, and unescapes each part. */
function splitUnescaped(s, sep) {
  const parts = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) {
      cur += s[i] + s[i + 1];
      i++;
    } else if (s[i] === sep) {
      parts.push(unescapeText(cur));
      cur = '';
    } else {
      cur += s[i];
    }
  }
  parts.push(unescapeText(cur));
  return parts;
}

// CSV

/** parseCSV reads RFC 4180 CSV (quoted fields may hold commas, quotes and line breaks); a file
 * that uses semicolons or tabs instead of commas (as some spreadsheets write it) works too. */
export function parseCSV(text) {
  const head = text.split(/\r?\n/, 5).join('\n');
  const counts = [',', ';', '\t'].map((d) => [d, head.split(d).length]);
  const delim = counts.sort((a, b) => b[1] - a[1])[0][0];
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch === '"' && field === '') {
      quoted = true;
    } else if (ch === delim) {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else {
      field += ch;
    }
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.some((f) => f.trim() !== ''));
}

/** parseCSVContacts: one contact a row. With a header row, its columns say what is where
 * ("Name", "First Name", "E-mail 1 - Value", "Mobile Phone"…); without one, every cell that
 * looks like an e-mail address or a phone number is taken as one, and the first other cell as
 * the name. */
export function parseCSVContacts(text) {
  const rows = parseCSV(text);
  if (!rows.length) return [];
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const kind = header.map(columnKind);
  const hasHeader = kind.some((k) => k !== '') && !rows[0].some((c) => EMAIL_RE.test(c.trim()) || looksLikePhone(c));
  const out = [];
  for (const row of hasHeader ? rows.slice(1) : rows) {
    const c = {name: '', emails: [], phones: []};
    const names = {full: '', first: '', middle: '', last: '', other: ''};
    row.forEach((cell, i) => {
      const v = cell.trim();
      if (!v) return;
      const k = hasHeader ? kind[i] : '';
      // A cell may list several values: Google writes "a@x.org ::: b@y.org".
      const values = v.split(/\s*:::\s*|\s*\n\s*/).filter(Boolean);
      if (k === 'email' || (!k && values.every((x) => EMAIL_RE.test(x)))) {
        c.emails.push(...values.filter((x) => EMAIL_RE.test(x)));
      } else if (k === 'phone' || (!k && values.every(looksLikePhone))) {
        c.phones.push(...values.filter(looksLikePhone));
      } else if (k.startsWith('name:')) {
        const part = k.slice(5);
        if (!names[part]) names[part] = v;
      } else if (!hasHeader && !names.other) {
        names.other = v;
      }
    });
    c.name = names.full || [names.first, names.middle, names.last].filter(Boolean).join(' ') || names.other ||
      c.emails[0] || c.phones[0] || '';
    c.emails = unique(c.emails, (e) => e.toLowerCase());
    c.phones = unique(c.phones, (p) => p.replace(/[^+\d]/g, ''));
    out.push(c);
  }
  return out;
}

/** columnKind: what a header cell names: "email", "phone", "name:full|first|middle|last", or ''. */
function columnKind(h) {
  if (/type|label|kind|status|date|note|custom/.test(h)) return '';
  if (/e-?mail/.test(h)) return 'email';
  if (/phone|mobile|tel\b|cell|handy|fax/.test(h)) return h.includes('fax') ? '' : 'phone';
  if (/^(first|given)( name)?$|first name|given name/.test(h)) return 'name:first';
  if (/^(middle|additional)( name)?$|middle name|additional name/.test(h)) return 'name:middle';
  if (/^(last|family|sur)( ?name)?$|last name|family name|surname/.test(h)) return 'name:last';
  if (/^(name|full name|display name|contact|contact name|fn)$/.test(h)) return 'name:full';
  return '';
}

function looksLikePhone(s) {
  const v = s.trim();
  return /^\+?[\d\s().\-/]{6,}$/.test(v) && v.replace(/\D/g, '').length >= 6;
}

function unique(list, key) {
  const seen = new Set();
  return list.filter((x) => {
    const k = key(x);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

// Normalising for the server

/**
 * normalPhone turns a phone number as people write it into the international form the server
 * knows (+ and digits, E.164), or '' if it cannot. "00" counts as "+"; a number without either
 * gets countryCode (e.g. "+44"): its national trunk prefix (a leading 0, or a leading 1 for
 * +1) is dropped first.
 */
export function normalPhone(raw, countryCode = '') {
  let s = String(raw || '').trim().replace(/^tel:/i, '');
  s = s.replace(/(ext\.?|x|#).*$/i, ''); // an extension is no part of the number
  const plus = s.startsWith('+');
  let digits = s.replace(/\D/g, '');
  if (!digits) return '';
  let out;
  if (plus) {
    out = `+${digits}`;
  } else if (digits.startsWith('00')) {
    out = `+${digits.slice(2)}`;
  } else {
    const cc = String(countryCode || '').replace(/\D/g, '');
    if (!cc) return '';
    if (cc === '1' && digits.length === 11 && digits.startsWith('1')) digits = digits.slice(1);
    else if (digits.startsWith('0')) digits = digits.slice(1);
    out = `+${cc}${digits}`;
  }
  return E164_RE.test(out) ? out : '';
}

/** normalEmail: the address if it looks like one (the server has the last word), else ''. */
export function normalEmail(raw) {
  const e = String(raw || '').trim().replace(/^mailto:/i, '');
  return EMAIL_RE.test(e) && e.length <= 254 ? e : '';
}

/**
 * matchRequests turns contacts into MatchUsers requests of at most `max` entries each. Each
 * entry's Name is a reference into `refs` ("c0", "c1", …) rather than the contact's name: the
 * server only echoes it back, so the names in the address book never leave the browser.
 * Returns {requests: [{Phones, Emails}], refs: Map(ref → {name, value}), emails, phones,
 * skipped} where skipped counts phone numbers that could not be put in international form.
 */
export function matchRequests(contacts, {countryCode = '', max = 500} = {}) {
  const entries = [];
  const refs = new Map();
  const seen = new Set();
  let skipped = 0;
  let emails = 0;
  let phones = 0;
  for (const c of contacts) {
    for (const raw of c.emails) {
      const e = normalEmail(raw);
      if (!e || seen.has(`e:${e.toLowerCase()}`)) continue;
      seen.add(`e:${e.toLowerCase()}`);
      const ref = `c${refs.size}`;
      refs.set(ref, {name: c.name, value: e});
      entries.push({kind: 'email', entry: {Name: ref, Email: e}});
      emails++;
    }
    for (const raw of c.phones) {
      const p = normalPhone(raw, countryCode);
      if (!p) {
        skipped++;
        continue;
      }
      if (seen.has(`p:${p}`)) continue;
      seen.add(`p:${p}`);
      const ref = `c${refs.size}`;
      refs.set(ref, {name: c.name, value: p});
      entries.push({kind: 'phone', entry: {Name: ref, PhoneNum: p}});
      phones++;
    }
  }
  const requests = [];
  for (let i = 0; i < entries.length; i += max) {
    const chunk = entries.slice(i, i + max);
    requests.push({
      Phones: chunk.filter((x) => x.kind === 'phone').map((x) => x.entry),
      Emails: chunk.filter((x) => x.kind === 'email').map((x) => x.entry),
    });
  }
  return {requests, refs, emails, phones, skipped};
}
