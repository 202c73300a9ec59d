// The sidebar's conversation list: name, last message, time and unread count, most recent
// first, with a filter box and arrow-key navigation.

import {eventText} from './events.js';
import {filePreview, avatarPic} from './files.js';
import {el, icon, ICONS, parseWireTime, shortTime, hue, initials, sameUser, visibleText} from './util.js';
import {botSummary} from './bots.js';

/** convoTitle is a conversation's name, or its other members when it has none. */
export function convoTitle(c, me) {
  if (c.Name) return visibleText(c.Name) || 'Unnamed'; // a name stored before they were refused
  const others = c.Members.map((m) => m.username).filter((n) => !sameUser(n, me));
  return others.length ? others.join(', ') : 'Just you';
}

export class ConvoList {
  constructor(chat, {list, empty, filter}, onOpen) {
    this.chat = chat;
    this.list = list;
    this.empty = empty;
    this.filter = filter;
    this.onOpen = onOpen;
    this.selected = null;
    this.frame = 0;
    filter.addEventListener('input', () => this.render());
    list.addEventListener('keydown', (e) => this.onKey(e));
  }

  /** schedule renders once for a burst of changes. A timer, not requestAnimationFrame: a hidden
   * tab gets no frames, and the unread count in its title is what the user looks at then. */
  schedule() {
    if (!this.frame) this.frame = setTimeout(() => this.render(), 16);
  }

  render() {
    clearTimeout(this.frame);
    this.frame = 0;
    const store = this.chat.store;
    if (!store) return;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.cid : null;
    const q = this.filter.value.trim().toLowerCase();
    const convos = store.convoList().filter((c) => !q || convoTitle(c, this.chat.me).toLowerCase().includes(q) ||
      c.Members.some((m) => m.username.toLowerCase().includes(q)));
    this.list.replaceChildren(...convos.map((c) => this.item(c)));
    this.empty.hidden = convos.length > 0;
    this.empty.textContent = q ? 'No conversation matches.' : 'No conversations yet. Start one with “New”.';
    if (focused) {
      const again = this.list.querySelector(`[data-cid="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    const unread = store.convos.find().reduce((n, c) => n + (c.UnreadCount || 0), 0);
    document.title = unread ? `(${unread > 999 ? '999+' : unread}) pingedchat` : 'pingedchat';
  }

  item(c) {
    const me = this.chat.me;
    const title = convoTitle(c, me);
    const last = c.last;
    let preview = 'No messages yet';
    if (last && last.kind === 'event') {
      preview = eventText(last, me);
    } else if (last) {
      let who = sameUser(last.f_username, me) ? 'You' : last.f_username;
      if (last.kind === 'autoreply') who += ' (automatic reply)';
      preview = `${who}: ${(filePreview(last.content) || botSummary(last)).replace(/\s+/g, ' ').slice(0, 140)}`;
    }
    const when = parseWireTime((last && last.m_time) || c.M_time);
    const pending = last && !last.m_time;
    const unread = c.UnreadCount > 0 ? (c.UnreadCount > 999 ? '999+' : String(c.UnreadCount)) : '';
    const avatar = el('span', {class: 'avatar', 'aria-hidden': 'true'}, initials(title));
    avatar.style.setProperty('--hue', hue(title));
    const others = (c.Members || []).filter((m) => !sameUser(m.username, me));
    if (others.length === 1) avatarPic(avatar, others[0].username);
    const label = [title, preview, pending && 'waiting to be sent', unread && `${unread} unread`].filter(Boolean).join(', ');
    const button = el('button', {
      type: 'button', class: `convo-item${unread ? ' has-unread' : ''}${c.Removed ? ' removed' : ''}`, dataset: {cid: c.CID},
      'aria-current': c.CID === this.selected ? 'true' : false, 'aria-label': label,
      onclick: () => this.onOpen(c.CID),
    },
    avatar,
    el('span', {class: 'ci-main'},
      el('span', {class: 'ci-name'}, title),
      el('span', {class: 'ci-last'}, preview)),
    el('span', {class: 'ci-side'},
      pending
        ? el('span', {class: 'ci-pending', title: 'Waiting to be sent'}, icon(ICONS.clock))
        : el('time', {}, shortTime(when)),
      unread ? el('span', {class: 'badge'}, unread) : null));
    return el('li', {}, button);
  }

  select(cid) {
    this.selected = cid;
    for (const b of this.list.querySelectorAll('.convo-item')) {
      if (b.dataset.cid === cid) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
  }

  /** Up and Down move between conversations, Home and End to the ends. */
  onKey(e) {
    const items = [...this.list.querySelectorAll('.convo-item')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    const to = {ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: items.length - 1}[e.key];
    if (to === undefined) return;
    e.preventDefault();
    items[Math.max(0, Math.min(items.length - 1, to))].focus();
  }
}
