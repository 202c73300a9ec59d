// The open conversation's message list: rendering, scroll-back, read receipts, and keeping the
// view pinned to the newest message while the user is at the bottom.
//
// Only a window of the conversation is rendered: at most WINDOW messages, the newest ones while
// the user is at the bottom. Scrolling up renders older pages above and trims the bottom;
// scrolling down again does the reverse; the jump button goes back to the newest page. A new
// message at the bottom appends its nodes (and trims the top), so a send or a receive costs the
// same in a conversation of 10 messages or of 100,000. Changes to messages outside the window
// are stored (store.js) and shown when their page is rendered again.
//
// Every message is rendered as text (util.el); links are <a> elements built from the text,
// http(s) only. Nothing from the server reaches innerHTML.

import {compareMessages} from './store.js';
import {isEvent, eventText} from './events.js';
import {botContent} from './bots.js';
import {fileView, avatarPic} from './files.js';
import {el, parseWireTime, clockTime, fullTime, dayLabel, dayKey, hue, initials, sameUser, listNames} from './util.js';

const GROUP_GAP_MS = 5 * 60 * 1000; // messages closer than this from one author share a bubble group
const NEAR_BOTTOM_PX = 80;
const PAGE = 60; // messages rendered at first, and per page of scrolling
const WINDOW = 200; // the most messages rendered at once
const LOAD_NEWER_PX = 200; // how close to the window's bottom scrolling down renders the next page
const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]}]/g;
const MENTION_RE = /(^|[^A-Za-z0-9_])@([A-Za-z0-9_]{3,32})(?![A-Za-z0-9_])/g;
// The kinds this view shows as messages; anything else (a kind added later) is a neutral line.
const SHOWN_KINDS = new Set(['', 'text', 'autoreply', 'bot']);

/** richText splits message text into text nodes and links (http and https only). */
export function richText(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(el('a', {href: m[0], target: '_blank', rel: 'noopener noreferrer nofollow'}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** withMentions wraps the @names of the members a message mentions (the server's list). */
export function withMentions(parts, mentions) {
  if (!mentions || !mentions.length) return parts;
  const names = new Set(mentions.map((n) => n.toUpperCase()));
  const out = [];
  for (const part of parts) {
    if (typeof part !== 'string') {
      out.push(part);
      continue;
    }
    let last = 0;
    for (const m of part.matchAll(MENTION_RE)) {
      if (!names.has(m[2].toUpperCase())) continue;
      const at = m.index + m[1].length;
      if (at > last) out.push(part.slice(last, at));
      out.push(el('span', {class: 'mention'}, `@${m[2]}`));
      last = at + 1 + m[2].length;
    }
    if (last < part.length) out.push(part.slice(last));
  }
  return out;
}

export class MessageView {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} els  scroller, list, note, jump, typing
   */
  constructor(chat, els) {
    this.chat = chat;
    this.els = els;
    this.cid = null;
    this.records = []; // what is rendered, in display order
    this.nodes = new Map(); // record.$loki → <li>
    this.receiptBoxes = new Set(); // the .receipts elements showing a marker
    this.receiptKeys = new WeakMap(); // .receipts element → the names it shows
    this.loading = false;
    this.atStart = false; // the window starts at the conversation's first message
    this.atEnd = true; // the window ends at the conversation's newest message
    this.wasAtBottom = true;

    els.scroller.addEventListener('scroll', () => this.onScroll(), {passive: true});
    els.jump.addEventListener('click', () => this.toNewest(true));
    // Scroll-back: load older messages when the top of the history comes into view.
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, {root: els.scroller, rootMargin: '200px 0px 0px 0px'});
    this.observer.observe(els.note);
  }

  get me() {
    return this.chat.me;
  }

  /** show renders a conversation from the device's copy: its newest messages. */
  show(cid) {
    this.cid = cid;
    this.loading = false;
    this.atStart = false;
    this.atEnd = true;
    this.records = this.chat.store.messagesOf(cid, {limit: PAGE});
    this.renderAll();
    this.scrollToBottom(false);
    this.updateNote();
    this.renderTyping();
  }

  close() {
    cancelAnimationFrame(this.pinFrame);
    this.pinFrame = 0;
    this.cid = null;
    this.records = [];
    this.nodes.clear();
    this.els.list.replaceChildren();
  }

  /** isNearBottom: the user sees the conversation's newest messages (not only the bottom of
   * an older window). */
  isNearBottom() {
    return this.atEnd && (!!this.pinFrame || this.nearWindowBottom(NEAR_BOTTOM_PX));
  }

  nearWindowBottom(px) {
    const s = this.els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < px;
  }

  /** toNewest shows the newest messages: a scroll, or a new window if they are not rendered. */
  toNewest(smooth) {
    if (!this.cid) return;
    if (this.atEnd) {
      this.scrollToBottom(smooth);
      return;
    }
    this.atEnd = true;
    this.atStart = false;
    this.records = this.chat.store.messagesOf(this.cid, {limit: PAGE});
    this.renderAll(null);
    this.scrollToBottom(false);
    this.updateNote();
    this.onAttention();
  }

  /** showJump offers the way back to the newest messages. */
  showJump(fresh) {
    const jump = this.els.jump;
    jump.textContent = fresh || jump.dataset.fresh ? 'New messages ↓' : 'Newest messages ↓';
    if (fresh) jump.dataset.fresh = '1';
    jump.hidden = false;
  }

  scrollToBottom(smooth) {
    const s = this.els.scroller;
    s.scrollTo({top: s.scrollHeight, behavior: smooth ? 'smooth' : 'auto'});
    this.hideJump();
    this.wasAtBottom = true;
  }

  /** pinToBottom scrolls to the bottom at the next frame, when its layout is done anyway: a
   * scroll now would force one more layout for every message. */
  pinToBottom() {
    this.hideJump();
    this.wasAtBottom = true;
    if (this.pinFrame) return;
    this.pinFrame = requestAnimationFrame(() => {
      this.pinFrame = 0;
      const s = this.els.scroller;
      if (this.atEnd) s.scrollTop = s.scrollHeight;
    });
  }

  hideJump() {
    this.els.jump.hidden = true;
    delete this.els.jump.dataset.fresh;
  }

  onScroll() {
    this.wasAtBottom = this.isNearBottom();
    if (this.wasAtBottom) this.hideJump();
    else if (!this.atEnd) this.showJump(false);
    if (!this.atEnd && !this.loading && this.nearWindowBottom(LOAD_NEWER_PX)) this.loadNewer();
    this.onAttention();
  }

  /** onAttention is set by the app: called when what the user can see may have changed. */
  onAttention() {}

  // Rendering

  /** renderAll renders the window anew. What the user was looking at stays in place: the
   * bottom, or the message at the top of the view (anchor(), taken before the window changed;
   * undefined: take it now). */
  renderAll(anchor = undefined) {
    const s = this.els.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    const stick = anchor === undefined && this.isNearBottom();
    if (anchor === undefined) anchor = stick ? null : this.anchor();
    this.nodes.clear();
    const items = [];
    let prev = null;
    for (const r of this.records) {
      items.push(...this.itemsFor(r, prev));
      prev = r;
    }
    this.els.list.replaceChildren(...items);
    this.renderedDay = dayKey(new Date());
    this.renderReceipts();
    if (stick) s.scrollTop = s.scrollHeight;
    else if (!anchor || !this.restore(anchor)) s.scrollTop = s.scrollHeight - fromBottom;
  }

  /** anchor is the first message (or event) in view and its distance from the view's top. */
  anchor() {
    const top = this.els.scroller.getBoundingClientRect().top;
    for (const r of this.records) {
      const li = this.nodes.get(r.$loki);
      if (!li) continue;
      const box = li.getBoundingClientRect();
      if (box.bottom > top) return {record: r, offset: box.top - top};
    }
    return null;
  }

  /** restore scrolls the anchor's message back to where it was; false if it is not rendered. */
  restore(anchor) {
    const li = this.nodes.get(anchor.record.$loki);
    if (!li) return false;
    const s = this.els.scroller;
    s.scrollTop += li.getBoundingClientRect().top - s.getBoundingClientRect().top - anchor.offset;
    return true;
  }

  /** trimTop removes the oldest messages' nodes beyond WINDOW (after one was appended). */
  trimTop(stick) {
    const n = this.records.length - WINDOW;
    if (n <= 0) return;
    const anchor = stick ? null : this.anchor();
    const keep = this.records[n];
    const keepLi = this.nodes.get(keep.$loki);
    for (const r of this.records.slice(0, n)) this.nodes.delete(r.$loki);
    this.records = this.records.slice(n);
    this.atStart = false;
    const list = this.els.list;
    while (list.firstChild && list.firstChild !== keepLi) list.firstChild.remove();
    // The new first message starts the window: its day line, and its author shown.
    if (keepLi && keepLi.classList.contains('grouped')) {
      const fresh = this.messageItem(keep, false);
      keepLi.replaceWith(fresh);
    }
    const first = this.nodes.get(keep.$loki);
    const d = parseWireTime(keep.m_time);
    if (first && d) first.before(el('li', {class: 'day', role: 'separator'}, el('span', {}, dayLabel(d))));
    if (anchor) this.restore(anchor);
  }

  /** inWindow: a record not rendered yet belongs in the window (it is not beyond either end
   * of what is rendered, unless that end is the conversation's). */
  inWindow(record) {
    const n = this.records.length;
    if (!n) return true;
    if (compareMessages(record, this.records[n - 1]) > 0) return this.atEnd;
    if (compareMessages(record, this.records[0]) < 0) return this.atStart;
    return true;
  }

  /** itemsFor builds the <li>s for a record: a day separator if it starts a day, then itself. */
  itemsFor(r, prev) {
    const items = [];
    const d = parseWireTime(r.m_time);
    const pd = prev ? parseWireTime(prev.m_time) : null;
    if (d && (!prev || dayKey(d) !== dayKey(pd))) {
      items.push(el('li', {class: 'day', role: 'separator'}, el('span', {}, dayLabel(d))));
    }
    if (isEvent(r)) {
      items.push(this.eventItem(r));
      return items;
    }
    const grouped = prev && !isEvent(prev) && sameUser(prev.f_username, r.f_username) &&
      (!d || !pd || (dayKey(d) === dayKey(pd) && d - pd < GROUP_GAP_MS));
    items.push(this.messageItem(r, !!grouped));
    return items;
  }

  /** eventItem is a centred system line: a rename, members added or removed, someone leaving. */
  eventItem(r) {
    const d = parseWireTime(r.m_time);
    const li = el('li', {class: 'event', role: 'note', dataset: {key: String(r.$loki)}},
      el('span', {}, eventText(r, this.me)),
      d ? el('time', {datetime: r.m_time, title: fullTime(d)}, ` · ${clockTime(d)}`) : null);
    this.nodes.set(r.$loki, li);
    return li;
  }

  messageItem(r, grouped) {
    if (!SHOWN_KINDS.has(r.kind || '')) {
      const li = el('li', {class: 'msg system', dataset: {key: String(r.$loki), id: String(r.id || '')}},
        el('p', {class: 'system-text'}, `${r.f_username || 'Someone'} sent something this app cannot show.`));
      this.nodes.set(r.$loki, li);
      return li;
    }
    const mine = sameUser(r.f_username, this.me);
    const li = el('li', {
      class: `msg ${mine ? 'mine' : 'theirs'}${grouped ? ' grouped' : ''}`,
      dataset: {key: String(r.$loki), state: r.state, id: String(r.id || '')},
    });
    if (!mine && (r.mentions || []).some((n) => sameUser(n, this.me))) li.classList.add('mentioned');
    if (r.deleted) li.classList.add('deleted');
    li.style.setProperty('--hue', hue(r.f_username));
    if (!mine) {
      const avatar = el('span', {class: 'avatar small', 'aria-hidden': 'true'}, grouped ? '' : initials(r.f_username));
      if (!grouped) avatarPic(avatar, r.f_username);
      li.append(avatar);
    }
    const auto = r.kind === 'autoreply';
    if (auto) li.classList.add('auto');
    if (r.kind === 'bot') li.classList.add('bot');
    const bubble = el('div', {class: 'bubble'},
      // The author is always there for screen readers; grouped messages hide it visually.
      el('span', {class: mine || grouped ? 'author visually-hidden' : 'author'}, mine ? 'You' : r.f_username, ': '),
      // The server sent it for its author, who may not have seen the conversation at all.
      auto ? el('span', {class: 'auto-label'}, 'Automatic reply') : null,
      r.reply_to ? this.quoteOf(r) : null,
      r.deleted ? el('p', {class: 'text deleted-text'}, 'Message deleted')
        : r.kind === 'bot' ? botContent(r)
          // dir="auto": each body's direction is its own, and its bidirectional controls (which a
          // body may hold) end with it.
          : (fileView(r.content) || el('p', {class: 'text', dir: 'auto'}, withMentions(richText(r.content), r.mentions))),
      el('span', {class: 'meta'}),
    );
    li.append(bubble);
    if (r.reactions && r.reactions.length && !r.deleted) li.append(this.reactionChips(r));
    if (this.actions && r.id && !r.deleted) li.append(this.actions.toolbar(r, li));
    li.append(el('div', {class: 'receipts', 'aria-live': 'off'}));
    this.nodes.set(r.$loki, li);
    this.fillMeta(li, r);
    return li;
  }

  /** quoteOf is the start of the message a reply answers: a click shows the original. */
  quoteOf(r) {
    const q = r.quote || {f_username: '', content: ''};
    return el('button', {type: 'button', class: 'quote', title: 'Show the original message',
      onclick: () => this.jumpTo(r.reply_to)},
    el('span', {class: 'quote-author'}, q.f_username || 'Reply'),
    el('span', {class: 'quote-text', dir: 'auto'}, q.content || 'Message deleted'));
  }

  /** reactionChips: each emoji with its count and who reacted; a click sets or clears ours. */
  reactionChips(r) {
    return el('div', {class: 'reactions'}, r.reactions.map((x) => {
      const mine = x.users.some((u) => sameUser(u, this.me));
      return el('button', {
        type: 'button', class: `react-chip${mine ? ' mine' : ''}`, 'aria-pressed': mine ? 'true' : 'false',
        title: `${listNames(x.users)} reacted with ${x.emoji}`,
        'aria-label': `${x.emoji} ${x.users.length}: ${listNames(x.users)}`,
        onclick: () => this.actions && this.actions.react(r, x.emoji, !mine),
      }, el('span', {class: 'emoji'}, x.emoji), el('span', {class: 'count'}, String(x.users.length)));
    }));
  }

  /** jumpTo shows a message of the open conversation, loading older history until it is in
   * view (or the conversation's start), and flashes it. Resolves true when found. */
  async jumpTo(id) {
    const cid = this.cid;
    for (let pages = 0; pages < 40 && cid === this.cid; pages++) {
      const r = this.records.find((x) => x.id === id);
      const li = r && this.nodes.get(r.$loki);
      if (li) {
        li.scrollIntoView({block: 'center'});
        li.classList.remove('flash');
        void li.offsetWidth; // restart the animation
        li.classList.add('flash');
        return true;
      }
      if (this.atStart) return false;
      if (this.loading) {
        await new Promise((resolve) => setTimeout(resolve, 100)); // a page is on its way
        continue;
      }
      const first = this.records[0];
      await this.loadOlder();
      if (this.records[0] === first) return false;
    }
    return false;
  }

  /** fillMeta writes a message's time and delivery state (the part that changes once sent). */
  fillMeta(li, r) {
    li.dataset.state = r.state;
    const meta = li.querySelector('.meta');
    const d = parseWireTime(r.m_time);
    const parts = [];
    if (d) parts.push(el('time', {datetime: r.m_time, title: fullTime(d)}, clockTime(d)));
    const ed = r.edited && !r.deleted ? parseWireTime(r.edited) : null;
    if (ed) parts.push(el('span', {class: 'edited', title: `Edited ${fullTime(ed)}`}, 'edited'));
    if (r.state === 'pending') {
      const waiting = !this.chat.loggedIn;
      parts.push(el('span', {class: 'state pending'}, waiting ? 'Waiting for connection' : 'Sending…'));
    } else if (r.state === 'failed') {
      parts.push(
        el('span', {class: 'state failed'}, `Not sent: ${r.error}`),
        el('button', {type: 'button', class: 'link', onclick: () => this.chat.retry(r.client_id)}, 'Retry'),
        el('button', {type: 'button', class: 'link', onclick: () => this.chat.discard(r.client_id)}, 'Delete'),
      );
    } else if (sameUser(r.f_username, this.me)) {
      parts.push(el('span', {class: 'state sent', title: 'Sent'}, el('span', {'aria-hidden': 'true'}, '✓'),
        el('span', {class: 'visually-hidden'}, 'Sent')));
    }
    meta.replaceChildren(...parts);
  }

  /** onMessage updates the view for one added or changed record. */
  onMessage(record, changed = false) {
    if (record.CID !== this.cid) return;
    if (changed && !this.nodes.has(record.$loki)) return; // a change to a message not shown
    if (!this.nodes.has(record.$loki) && !this.inWindow(record)) {
      // Beyond the rendered window (the user scrolled back): it shows with its page. Our own
      // new message takes us to the newest ones, as a send does at the bottom.
      if (record.state === 'pending' && sameUser(record.f_username, this.me)) this.toNewest(false);
      else if (compareMessages(record, this.records[this.records.length - 1]) > 0) this.showJump(true);
      return;
    }
    if (this.renderedDay !== dayKey(new Date())) {
      // Midnight passed since the list was drawn: "Today" is "Yesterday" now.
      if (!this.nodes.has(record.$loki)) this.records.push(record);
      this.records.sort(compareMessages);
      this.renderAll();
      return;
    }
    const li = this.nodes.get(record.$loki);
    // Whether the user is at the newest messages, as the last scroll left it: measuring it
    // would force a layout for every message.
    const stick = this.atEnd && (!!this.pinFrame || this.wasAtBottom);
    if (li) {
      // Reconciled (pending → sent), failed, or changed (edited, deleted, reacted to): redrawn
      // in place unless its place changed.
      const sorted = [...this.records].sort(compareMessages);
      if (sorted.every((r, i) => r === this.records[i])) {
        const fresh = this.messageItem(record, li.classList.contains('grouped'));
        li.replaceWith(fresh);
        this.fillMeta(fresh, record);
        this.ensureDaySeparator(fresh, record);
        this.renderReceipts();
        if (stick) this.pinToBottom(); // it may have grown
        return;
      }
      this.records = sorted;
      this.renderAll();
      return;
    }
    const last = this.records[this.records.length - 1];
    if (!last || compareMessages(record, last) > 0) {
      // The common case, a new message at the bottom: its nodes only, whatever the length.
      this.records.push(record);
      this.els.list.append(...this.itemsFor(record, last || null));
      this.trimTop(stick);
      this.renderReceipts();
    } else {
      this.records.push(record);
      this.records.sort(compareMessages);
      this.renderAll();
    }
    if (stick || sameUser(record.f_username, this.me)) this.pinToBottom();
    else this.showJump(true);
    if (this.records.length === 1) this.updateNote();
    this.onAttention();
  }

  /** ensureDaySeparator adds the day line above a message that got its time only now (a
   * pending message that was sent) and is the first of its day. */
  ensureDaySeparator(li, record) {
    const d = parseWireTime(record.m_time);
    if (!d) return;
    const i = this.records.indexOf(record);
    const prev = i > 0 ? parseWireTime(this.records[i - 1].m_time) : null;
    const above = li.previousElementSibling;
    if ((!prev || dayKey(prev) !== dayKey(d)) && !(above && above.classList.contains('day'))) {
      li.before(el('li', {class: 'day', role: 'separator'}, el('span', {}, dayLabel(d))));
    }
  }

  /** reload re-reads the conversation from the store (after a sync or a deletion), keeping
   * at least as much history as is shown. */
  reload() {
    if (!this.cid) return;
    const store = this.chat.store;
    const first = this.records[0];
    if (this.atEnd || !first) {
      this.records = store.messagesOf(this.cid, {limit: Math.min(WINDOW, Math.max(PAGE, this.records.length + 5))});
      this.atEnd = true;
    } else {
      // The same stretch of the conversation (with what arrived within it).
      this.records = store.messagesOf(this.cid, {from: first, limit: this.records.length});
      this.atEnd = !this.records.length || store.isNewest(this.records[this.records.length - 1]);
    }
    this.renderAll();
    this.updateNote();
  }

  /** refreshStates re-renders pending messages' wording when the connection changes. */
  refreshStates() {
    for (const r of this.records) {
      if (r.state === 'pending') this.fillMeta(this.nodes.get(r.$loki), r);
    }
  }

  /** renderReceipts shows who has read how far: under the newest message that each other
   * member has read and did not write. Writing counts as reading everything before: a member's
   * own message moves their marker even before their read time catches up. No marker goes under
   * the reader's own message ("Seen by X" under X's words says nothing). */
  renderReceipts() {
    const c = this.cid && this.chat.store.convo(this.cid);
    const readers = new Map(); // record → [usernames]
    for (const m of c ? c.Members : []) {
      if (sameUser(m.username, this.me)) continue;
      let readTo = m.read_time || '';
      for (const r of this.records) {
        if (r.m_time && r.m_time > readTo && sameUser(r.f_username, m.username)) readTo = r.m_time;
      }
      if (!readTo) continue;
      let at = null;
      for (const r of this.records) {
        if (r.m_time && r.m_time <= readTo && !sameUser(r.f_username, m.username)) at = r;
      }
      if (!at) continue;
      if (!readers.has(at)) readers.set(at, []);
      readers.get(at).push(m.username);
    }
    // Only the markers that moved are touched: clearing and refilling every message's would
    // make the whole list's layout dirty for each message.
    const shown = new Map(); // receipts box → names
    for (const [r, names] of readers) {
      const box = this.nodes.has(r.$loki) && this.nodes.get(r.$loki).querySelector('.receipts');
      if (box) shown.set(box, names);
    }
    for (const box of this.receiptBoxes) {
      if (!shown.has(box)) {
        box.replaceChildren();
        this.receiptKeys.delete(box);
      }
    }
    for (const [box, names] of shown) {
      const key = names.join('\n');
      if (this.receiptKeys.get(box) === key) continue;
      this.receiptKeys.set(box, key);
      box.replaceChildren(
        ...names.map((n) => {
          const dot = el('span', {class: 'avatar tiny', 'aria-hidden': 'true', title: n}, initials(n));
          dot.style.setProperty('--hue', hue(n));
          return dot;
        }),
        el('span', {class: 'seen'}, `Seen by ${listNames(names)}`),
      );
    }
    this.receiptBoxes = new Set(shown.keys());
  }

  renderTyping() {
    const names = this.cid ? this.chat.typingUsers(this.cid) : [];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length > 1 && names.length < 4) text = `${listNames(names)} are typing…`;
    else if (names.length) text = 'Several people are typing…';
    this.els.typing.textContent = text;
  }

  // History

  updateNote(text) {
    const c = this.cid && this.chat.store.convo(this.cid);
    if (text === undefined) {
      const first = this.records[0];
      const oldestHere = !first || !this.chat.store.messagesOf(this.cid, {before: first, limit: 1}).length;
      if (this.atStart || (c && c.historyComplete && oldestHere)) {
        text = this.records.length ? 'This is the start of the conversation.' : 'No messages yet. Say hello!';
      } else {
        text = '';
      }
    }
    this.els.note.textContent = text;
  }

  /** loadNewer appends the next page below a window that is not at the newest messages (they
   * are on the device: a sync brings the newest first), trimming the top. */
  loadNewer() {
    const last = this.records[this.records.length - 1];
    if (!this.cid || !last) return;
    const store = this.chat.store;
    const newer = store.messagesOf(this.cid, {from: last, limit: PAGE + 1}).filter((r) => !this.nodes.has(r.$loki));
    if (!newer.length) {
      this.atEnd = true; // nothing newer here (the last one was removed meanwhile)
      return;
    }
    const anchor = this.anchor();
    this.records = [...this.records, ...newer];
    if (this.records.length > WINDOW) {
      this.records = this.records.slice(this.records.length - WINDOW);
      this.atStart = false;
    }
    this.atEnd = store.isNewest(this.records[this.records.length - 1]);
    this.renderAll(anchor);
    this.updateNote();
  }

  /** loadOlder prepends the previous page: from the device, or from the server. */
  async loadOlder() {
    if (!this.cid || this.loading || this.atStart) return;
    const cid = this.cid;
    const oldest = this.records[0] || null;
    if (!oldest) {
      this.atStart = !!(this.chat.store.convo(cid) || {}).historyComplete;
      this.updateNote();
      return;
    }
    this.loading = true;
    this.updateNote('Loading older messages…');
    let loaded = false;
    try {
      const older = await this.chat.loadOlder(cid, oldest);
      if (cid !== this.cid) return;
      if (!older.length) {
        this.atStart = true;
      } else {
        const anchor = this.anchor();
        this.records = [...older, ...this.records];
        if (this.records.length > WINDOW) {
          this.records = this.records.slice(0, WINDOW);
          this.atEnd = false;
        }
        this.renderAll(anchor);
        loaded = true;
      }
      this.updateNote();
    } catch (err) {
      if (cid === this.cid) this.updateNote(`Couldn't load older messages: ${err.message}. Scroll up to try again.`);
    } finally {
      this.loading = false;
    }
    // The observer fires on changes only: if the top is still in view (short messages), go on.
    if (loaded && cid === this.cid && !this.atStart && this.els.scroller.scrollTop < 200) {
      requestAnimationFrame(() => this.loadOlder());
    }
  }
}
