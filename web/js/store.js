// The local copy of a user's conversations, messages and unsent messages: a LokiJS database
// persisted to IndexedDB (vendor/lokijs.min.js, vendor/incremental-indexeddb-adapter.js), one
// per user, so that a reload shows the last state before the socket connects. The incremental
// adapter stores records in chunks of 100 and a save writes only the changed chunks, so saving a
// sent message costs the same whatever is stored. A database saved by an older client (one JSON
// document through vendor/loki-indexed-adapter.js) is copied over once, then deleted.
//
// Records:
//   convos   {CID, Name, M_time, UnreadCount, Members:[{username, read_time}], syncedTo,
//             historyComplete, last:{f_username, content, kind, m_time}|null}
//            syncedTo: every message of the conversation up to this m_time is stored here (from
//            the oldest one stored on); sync asks the server only for what is newer. Only the
//            server's history pages move it, never live pushes, so a missed push is fetched.
//   messages {CID, id, m_time, f_username, content, kind, client_id, state, error, created,
//             edited, deleted, reactions, changed, reply_to, quote, mentions, fromServer}
//            fromServer: the state fields came from the server (not only our acknowledgement).
//            state: 'sent' (stored by the server), 'pending' (in the outbox), 'failed'.
//            kind: the server's; 'autoreply' for an automatic reply, '' or 'text' otherwise.
//            Change rows (kind edit, delete, reaction: DESIGN §3.2) are not stored: they are
//            applied to their target (when newer than its `changed`) by applyChange.
//   outbox   {client_id, CID, content, created, reply_to, reply_m_time}: messages written but
//            not yet acknowledged.
//   meta     {key, value}
//   mailbodies {ID, M_time, Text, HTML, To, Cc, Attachments, used}: the e-mails read here, whole
//            (GetEmail: lists carry summaries only), at most KEEP_MAIL_BODIES and about
//            MAIL_BODY_CHARS characters, the least recently read forgotten first. M_time is the
//            e-mail's when its body came (a draft's body is stale once the draft is newer).

/* global loki, LokiIndexedAdapter, IncrementalIndexedDBAdapter */

import {sameUser, wireTime} from './util.js';

// Keep at most this many messages per conversation on the device; older ones are fetched again
// on scroll-back. LokiJS saves the whole database at once, so its size is the cost of a save.
const KEEP_PER_CONVO = 1000;
const PRUNE_AT = 1200;
const OLD_APP = 'pingedchat'; // the LokiIndexedAdapter catalog of older clients
const MIGRATE_WAIT_MS = 5000; // an older client's database that cannot be read in this long is left
const KEEP_MAIL_BODIES = 100;
const MAIL_BODY_CHARS = 8000000;

/** order sorts messages: stored ones by m_time, then unsent ones in the order they were written. */
export function orderKey(m) {
  return m.m_time ? `0${m.m_time}` : `1${String(m.created).padStart(16, '0')}`;
}

export function compareMessages(a, b) {
  const ka = orderKey(a);
  const kb = orderKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export class LocalStore {
  constructor(username) {
    this.username = username;
    this.name = `pingedchat-${username.toUpperCase()}.db`;
    this.db = null;
    this.byServerId = new Map(); // `${CID}/${id}` → message record
    this.byClientId = new Map(); // client_id → message record
    // CID → the conversation's message records in display order (compareMessages), kept on
    // every insert, removal and reordering: "the newest", "the page before" and "unread after"
    // are a binary search and a short walk, never a scan or a sort of the conversation.
    this.byConvo = new Map();
  }

  /** open loads the user's database from IndexedDB (an empty one the first time, or what an
   * older client saved). */
  async open() {
    const adapter = new IncrementalIndexedDBAdapter();
    this.db = new loki(this.name, {adapter, autosave: true, autosaveInterval: 1500});
    await new Promise((resolve, reject) => this.db.loadDatabase({}, (err) => (err ? reject(err) : resolve())));
    const fresh = !this.db.getCollection('convos');
    // No binary index on messages: byConvo is the per-conversation order, and an index would be
    // saved whole (one entry per message) with every change.
    this.convos = this.collection('convos', {unique: ['CID']});
    this.messages = this.collection('messages', {});
    this.outbox = this.collection('outbox', {unique: ['client_id']});
    this.meta = this.collection('meta', {unique: ['key']});
    this.mailbodies = this.collection('mailbodies', {unique: ['ID']});
    if (fresh) await this.migrate();
    this.indexAll();
    return this;
  }

  /** migrate copies the database an older client saved as one JSON document, then deletes it. */
  async migrate() {
    if (typeof LokiIndexedAdapter === 'undefined') return;
    const old = new LokiIndexedAdapter(OLD_APP);
    const json = await withTimeout(new Promise((resolve) => old.loadDatabase(this.name, resolve)), MIGRATE_WAIT_MS);
    if (typeof json !== 'string' || !json) return;
    try {
      const prev = new loki(this.name);
      prev.loadJSON(json);
      for (const name of ['convos', 'messages', 'outbox', 'meta']) {
        const from = prev.getCollection(name);
        if (!from) continue;
        for (const d of from.find()) {
          const {$loki, meta, ...doc} = d; // eslint-disable-line no-unused-vars
          this[name].insert(doc);
        }
      }
      await this.save();
    } catch (err) {
      console.warn('pingedchat: the device copy of an older version could not be read:', err);
      return;
    }
    await withTimeout(new Promise((resolve) => old.deleteDatabase(this.name, resolve)), MIGRATE_WAIT_MS);
  }

  /** indexAll builds the in-memory indexes of the messages loaded. */
  indexAll() {
    for (const m of this.messages.find()) {
      this.indexMessage(m);
      this.ordered(m.CID).push(m);
    }
    for (const list of this.byConvo.values()) list.sort(compareMessages);
  }

  collection(name, options) {
    return this.db.getCollection(name) || this.db.addCollection(name, options);
  }

  /** ordered is a conversation's ordered records (created empty). */
  ordered(cid) {
    let list = this.byConvo.get(cid);
    if (!list) this.byConvo.set(cid, (list = []));
    return list;
  }

  /** place puts a record in its conversation's order: at the end, nearly always. */
  place(m) {
    const list = this.ordered(m.CID);
    const n = list.length;
    if (!n || compareMessages(list[n - 1], m) <= 0) list.push(m);
    else list.splice(upperBound(list, m), 0, m);
  }

  /** unplace takes a record out of its conversation's order (before its key changes). */
  unplace(m) {
    const list = this.byConvo.get(m.CID);
    if (!list) return;
    let i = lowerBound(list, m);
    while (i < list.length && list[i] !== m && compareMessages(list[i], m) === 0) i++;
    if (list[i] !== m) i = list.lastIndexOf(m); // not where its key says: its key changed unseen
    if (i >= 0) list.splice(i, 1);
  }

  indexMessage(m) {
    if (m.id) this.byServerId.set(`${m.CID}/${m.id}`, m);
    if (m.client_id) this.byClientId.set(m.client_id, m);
  }

  /** save writes to IndexedDB now; resolves when written (autosave covers everything else). */
  save() {
    return new Promise((resolve, reject) => {
      this.db.saveDatabase((err) => (err ? reject(err) : resolve()));
    });
  }

  /** close saves pending changes and stops autosave. */
  close() {
    return new Promise((resolve) => this.db.close(() => resolve()));
  }

  /** destroy removes the user's local data (logout on a shared device). */
  async destroy() {
    this.db.autosaveDisable();
    // A save under way first: the adapter refuses to delete meanwhile.
    await new Promise((resolve) => this.db.throttledSaveDrain(() => this.db.deleteDatabase(() => resolve())));
    // An older client's copy, if one was left (it could not be read).
    if (typeof LokiIndexedAdapter !== 'undefined') {
      const old = new LokiIndexedAdapter(OLD_APP);
      await withTimeout(new Promise((resolve) => old.deleteDatabase(this.name, resolve)), MIGRATE_WAIT_MS);
    }
  }

  getMeta(key, fallback = null) {
    const r = this.meta.by('key', key);
    return r ? r.value : fallback;
  }

  setMeta(key, value) {
    const r = this.meta.by('key', key);
    if (r) {
      r.value = value;
      this.meta.update(r);
    } else {
      this.meta.insert({key, value});
    }
  }

  // Mail bodies

  mailBody(id) {
    return this.mailbodies.by('ID', id) || null;
  }

  /** putMailBody keeps an e-mail's body, forgetting the least recently read beyond the bounds. */
  putMailBody(body) {
    const r = this.mailBody(body.ID);
    const rec = {
      ID: body.ID, M_time: body.M_time || '', Text: body.Text || '', HTML: body.HTML || '',
      To: body.To || [], Cc: body.Cc || [], Attachments: body.Attachments || [], used: Date.now(),
    };
    if (r) {
      Object.assign(r, rec);
      this.mailbodies.update(r);
    } else {
      this.mailbodies.insert(rec);
    }
    const all = this.mailbodies.find().sort((a, b) => b.used - a.used);
    let chars = 0;
    const gone = all.filter((b, i) => {
      chars += b.Text.length + b.HTML.length;
      return b.ID !== body.ID && (i >= KEEP_MAIL_BODIES || chars > MAIL_BODY_CHARS);
    });
    if (gone.length) this.mailbodies.remove(gone);
  }

  /** touchMailBody marks a body as just read (it is kept longest). */
  touchMailBody(id) {
    const r = this.mailBody(id);
    if (!r) return;
    r.used = Date.now();
    this.mailbodies.update(r);
  }

  dropMailBody(id) {
    const r = this.mailBody(id);
    if (r) this.mailbodies.remove(r);
  }

  // Conversations

  convo(cid) {
    return this.convos.by('CID', cid) || null;
  }

  /** convoList: most recent first. */
  convoList() {
    return this.convos.find().sort((a, b) => (recentOf(b) > recentOf(a) ? 1 : recentOf(b) < recentOf(a) ? -1 : 0));
  }

  /** upsertConvo merges fields into a conversation, creating it if needed. */
  upsertConvo(cid, fields) {
    const c = this.convo(cid);
    if (c) {
      Object.assign(c, fields);
      this.convos.update(c);
      return c;
    }
    return this.convos.insert({
      CID: cid, Name: '', M_time: '', UnreadCount: 0, Members: [], syncedTo: '',
      historyComplete: false, last: null, ...fields,
    });
  }

  /** removeConvo forgets a conversation with its messages and unsent messages. */
  removeConvo(cid) {
    const c = this.convo(cid);
    if (c) this.convos.remove(c);
    const list = this.byConvo.get(cid) || [];
    for (const m of list) {
      if (m.id) this.byServerId.delete(`${m.CID}/${m.id}`);
      if (m.client_id) this.byClientId.delete(m.client_id);
    }
    this.byConvo.delete(cid);
    if (list.length) this.messages.remove(list); // one batch
    this.outbox.findAndRemove({CID: cid});
  }

  // Messages

  /** messagesOf returns up to limit messages of a conversation, in display order: the newest,
   * or those older than `before` (a message record), or those from `from` on (a record,
   * included). A binary search and a slice: its cost does not grow with the conversation. */
  messagesOf(cid, {before = null, from = null, limit = 60} = {}) {
    const list = this.byConvo.get(cid) || [];
    if (from) {
      const i = lowerBound(list, from);
      return list.slice(i, i + limit);
    }
    const end = before ? lowerBound(list, before) : list.length;
    return list.slice(Math.max(0, end - limit), end);
  }

  /** isNewest: no message of the conversation sorts after this record. */
  isNewest(m) {
    const list = this.byConvo.get(m.CID) || [];
    return list[list.length - 1] === m;
  }

  /** newestStored is the newest m_time stored for a conversation ('' if none). Unsent messages
   * (no m_time) sort last: the walk passes over those only. */
  newestStored(cid) {
    const list = this.byConvo.get(cid) || [];
    for (let i = list.length - 1; i >= 0; i--) if (list[i].m_time) return list[i].m_time;
    return '';
  }

  /** newestMessage is the newest m_time of a message (not a timeline event) stored for a
   * conversation ('' if none): what a read marker points at. */
  newestMessage(cid) {
    const list = this.byConvo.get(cid) || [];
    for (let i = list.length - 1; i >= 0; i--) if (list[i].m_time && list[i].kind !== 'event') return list[i].m_time;
    return '';
  }

  /** oldestStored is the oldest stored (sent) message of a conversation, or null. */
  oldestStored(cid) {
    const list = this.byConvo.get(cid) || [];
    return list.length && list[0].m_time ? list[0] : null;
  }

  /** countAfter counts a conversation's stored messages newer than an m_time for which
   * pred(record) holds, walking from the newest back to that time only. Returns -1 when the
   * device has no message of the conversation. */
  countAfter(cid, mTime, pred) {
    const list = this.byConvo.get(cid) || [];
    if (!list.length) return -1;
    let n = 0;
    for (let i = list.length - 1; i >= 0; i--) {
      const m = list[i];
      if (!m.m_time) continue;
      if (m.m_time <= mTime) break;
      if (pred(m)) n++;
    }
    return n;
  }

  /**
   * putServerMessage stores a message as the server sent it (push, ack or history). A message
   * we wrote ourselves is matched by its client_id and updated in place — that is how a pending
   * message becomes sent, whichever of the ack, the push or a sync arrives first.
   * Returns {record, added, confirmed}: added when it was not known before, confirmed when it
   * was one of our unsent messages.
   */
  putServerMessage(cid, msg, me) {
    if (CHANGE_KINDS.has(msg.kind)) return this.applyChange(cid, msg);
    const key = `${cid}/${msg.id}`;
    const known = this.byServerId.get(key);
    if (known && typeof msg.changed === 'string' && msg.changed > (known.changed || '')) {
      // History with a newer state than ours (changes we did not see): take it.
      Object.assign(known, {content: typeof msg.content === 'string' ? msg.content : ''}, stateOf(msg));
      this.messages.update(known);
      return {record: known, added: false, confirmed: false, changed: true};
    }
    if (known && !known.fromServer && msg.kind !== undefined) {
      // Our own message, acknowledged, now as the server stored it (its mentions, its quote).
      Object.assign(known, stateOf(msg), {fromServer: true});
      this.messages.update(known);
      return {record: known, added: false, confirmed: false, changed: true};
    }
    if (known) return {record: known, added: false, confirmed: false};
    const mine = msg.client_id ? this.byClientId.get(msg.client_id) : null;
    if (mine && mine.CID === cid && !mine.id && sameUser(msg.f_username, me)) {
      this.unplace(mine); // its m_time moves it among the sent messages
      Object.assign(mine, {id: msg.id, m_time: msg.m_time, content: msg.content, state: 'sent', error: ''});
      if (msg.kind !== undefined) Object.assign(mine, stateOf(msg), {fromServer: true}); // a push or history, not our ack
      this.place(mine);
      this.messages.update(mine);
      this.indexMessage(mine);
      this.outbox.findAndRemove({client_id: msg.client_id});
      this.noteLast(cid, mine);
      return {record: mine, added: false, confirmed: true};
    }
    const record = this.messages.insert({
      CID: cid, id: msg.id, m_time: msg.m_time, f_username: msg.f_username || '',
      content: typeof msg.content === 'string' ? msg.content : '', client_id: msg.client_id || '',
      kind: typeof msg.kind === 'string' ? msg.kind : '',
      state: 'sent', error: '', created: Date.now(), ...stateOf(msg), fromServer: true,
    });
    this.indexMessage(record);
    this.place(record);
    this.noteLast(cid, record);
    return {record, added: true, confirmed: false};
  }

  /**
   * applyChange applies a change row (edit, delete, reaction) to its target, if the target is
   * here and the row is newer than what the target shows: a row applies once, however often it
   * arrives. Returns {record: the target, changed} (record null if the target is not here).
   */
  applyChange(cid, row) {
    const t = this.byServerId.get(`${cid}/${row.target}`);
    if (!t || !row.m_time || (t.changed && row.m_time <= t.changed)) return {record: t || null, added: false, confirmed: false, changed: false};
    t.changed = row.m_time;
    if (row.kind === 'edit') {
      t.content = typeof row.content === 'string' ? row.content : '';
      t.edited = row.m_time;
      t.mentions = Array.isArray(row.mentions) ? row.mentions.filter((m) => typeof m === 'string') : [];
    } else if (row.kind === 'delete') {
      Object.assign(t, {content: '', deleted: true, reactions: [], mentions: []});
    } else {
      t.reactions = reactionsOf(row.reactions);
    }
    this.messages.update(t);
    const c = this.convo(cid);
    if (c && c.last && c.last.m_time === t.m_time) {
      c.last = lastOf(t);
      this.convos.update(c);
    }
    return {record: t, added: false, confirmed: false, changed: true};
  }

  /** addPending stores a message the user just wrote and queues it for sending; reply is the
   * message record it answers, if any. */
  addPending(cid, content, clientId, me, reply = null) {
    const created = Date.now();
    const replyFields = reply ? {reply_to: reply.id, quote: {f_username: reply.f_username, content: reply.content.slice(0, 100)}} : {};
    const record = this.messages.insert({
      CID: cid, id: 0, m_time: '', f_username: me, content, client_id: clientId,
      state: 'pending', error: '', created, ...replyFields,
    });
    this.indexMessage(record);
    this.place(record);
    this.outbox.insert({client_id: clientId, CID: cid, content, created,
      ...(reply ? {reply_to: reply.id, reply_m_time: reply.m_time} : {})});
    this.noteLast(cid, record);
    return record;
  }

  /** outboxItems: unsent messages in the order they were written. */
  outboxItems() {
    return this.outbox.find().sort((a, b) => a.created - b.created);
  }

  /** failMessage takes a message out of the outbox, marked with why the server refused it. */
  failMessage(clientId, reason) {
    this.outbox.findAndRemove({client_id: clientId});
    const m = this.byClientId.get(clientId);
    if (m && !m.id) {
      m.state = 'failed';
      m.error = reason;
      this.messages.update(m);
    }
    return m || null;
  }

  /** retryMessage puts a failed message back in the outbox, with the same client_id. */
  retryMessage(clientId) {
    const m = this.byClientId.get(clientId);
    if (!m || m.id) return null;
    m.state = 'pending';
    m.error = '';
    this.messages.update(m);
    if (!this.outbox.by('client_id', clientId)) {
      this.outbox.insert({client_id: clientId, CID: m.CID, content: m.content, created: m.created});
    }
    return m;
  }

  /** deleteUnsent removes a message that was never stored by the server. */
  deleteUnsent(clientId) {
    const m = this.byClientId.get(clientId);
    if (!m || m.id) return null;
    this.outbox.findAndRemove({client_id: clientId});
    this.forgetMessage(m);
    this.recomputeLast(m.CID);
    return m;
  }

  forgetMessage(m) {
    if (m.id) this.byServerId.delete(`${m.CID}/${m.id}`);
    if (m.client_id) this.byClientId.delete(m.client_id);
    this.unplace(m);
    this.messages.remove(m);
  }

  noteLast(cid, m) {
    const c = this.convo(cid);
    if (!c) return;
    const last = c.last;
    if (!last || compareMessages(m, last) >= 0 || (m.client_id && last.client_id === m.client_id)) {
      c.last = lastOf(m);
      if (m.m_time && m.m_time > c.M_time) c.M_time = m.m_time;
      this.convos.update(c);
    }
  }

  recomputeLast(cid) {
    const c = this.convo(cid);
    if (!c) return;
    const list = this.messagesOf(cid, {limit: 1});
    const m = list[0];
    c.last = m ? lastOf(m) : null;
    this.convos.update(c);
  }

  /** prune keeps the newest KEEP_PER_CONVO stored messages of a conversation. */
  prune(cid) {
    const list = this.byConvo.get(cid) || [];
    const sent = list.filter((m) => m.m_time);
    if (sent.length <= PRUNE_AT) return false;
    // The oldest sent messages are the start of the conversation's order (unsent ones sort
    // last): one slice and one batch removal, not a search and a splice per message.
    const drop = sent.slice(0, sent.length - KEEP_PER_CONVO);
    for (const m of drop) {
      if (m.id) this.byServerId.delete(`${m.CID}/${m.id}`);
      if (m.client_id) this.byClientId.delete(m.client_id);
    }
    this.byConvo.set(cid, list.slice(drop.length));
    this.messages.remove(drop);
    this.upsertConvo(cid, {historyComplete: false});
    return true;
  }
}

/** withTimeout resolves as p does, or with undefined after ms. */
function withTimeout(p, ms) {
  return Promise.race([p, new Promise((resolve) => setTimeout(resolve, ms))]);
}

/** lowerBound is the index of the first record of a sorted list not before m. */
function lowerBound(list, m) {
  const key = orderKey(m);
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (orderKey(list[mid]) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** upperBound is the index of the first record of a sorted list after m. */
function upperBound(list, m) {
  const key = orderKey(m);
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (orderKey(list[mid]) <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** lastOf is what the conversation list shows of a conversation's newest message. */
function lastOf(m) {
  return {
    f_username: m.f_username, content: m.deleted ? 'Message deleted' : m.content, kind: m.kind || '',
    m_time: m.m_time, created: m.created, client_id: m.client_id,
  };
}

/** CHANGE_KINDS are the rows that change another message (DESIGN §3.2). */
export const CHANGE_KINDS = new Set(['edit', 'delete', 'reaction']);

/** reactionsOf keeps the well-formed entries of a server's reaction list. */
function reactionsOf(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((r) => r && typeof r.emoji === 'string' && Array.isArray(r.users))
    .map((r) => ({emoji: r.emoji, users: r.users.filter((u) => typeof u === 'string')}));
}

/** stateOf is a message's current state as the server sent it (edits, reactions, reply…). */
function stateOf(msg) {
  const q = msg.quote && typeof msg.quote === 'object' ? msg.quote : null;
  return {
    edited: typeof msg.edited === 'string' ? msg.edited : '',
    deleted: msg.deleted === true,
    reactions: reactionsOf(msg.reactions),
    changed: typeof msg.changed === 'string' ? msg.changed : '',
    reply_to: Number.isSafeInteger(msg.reply_to) ? msg.reply_to : 0,
    quote: q ? {f_username: String(q.f_username || ''), content: String(q.content || '')} : null,
    mentions: Array.isArray(msg.mentions) ? msg.mentions.filter((m) => typeof m === 'string') : [],
  };
}

/** recentOf orders the conversation list: the newest activity, including unsent messages. */
function recentOf(c) {
  const pendingAt = c.last && !c.last.m_time ? wireTime(new Date(c.last.created)) : '';
  return pendingAt > (c.M_time || '') ? pendingAt : c.M_time || '';
}
