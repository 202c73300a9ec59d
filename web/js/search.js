// Searching messages in every conversation (SearchMessages, DESIGN §3.2): results newest first,
// 20 at a time, each opening its conversation at the message. The server marks the matching
// words as separate runs of the snippet; they become <mark> elements here, with the text always
// inserted as text.

import {describeError} from './chat.js';
import {convoTitle} from './convolist.js';
import {el, parseWireTime, fullTime, clockTime} from './util.js';

export class Search {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} els   form, input, panel, list, more, close, status
   * @param {function(string, number): void} open  opens a conversation at a message id
   */
  constructor(chat, els, open) {
    this.chat = chat;
    this.els = els;
    this.open = open;
    this.query = '';
    this.last = '';
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.run(els.input.value, false);
    });
    els.more.addEventListener('click', () => this.run(this.query, true));
    els.close.addEventListener('click', () => this.clear());
    els.input.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.clear();
      if (e.key === 'Enter' && !e.isComposing) { // also where no keypress follows (some IMEs)
        e.preventDefault();
        this.run(els.input.value, false);
      }
    });
  }

  clear() {
    this.query = '';
    this.els.input.value = '';
    this.els.list.replaceChildren();
    this.els.panel.hidden = true;
  }

  async run(query, more) {
    query = query.trim();
    if (!query) return this.clear();
    this.els.panel.hidden = false;
    if (!more) {
      this.query = query;
      this.last = '';
      this.els.list.replaceChildren();
    }
    this.els.more.hidden = true;
    this.els.status.textContent = 'Searching…';
    let rep;
    try {
      rep = await this.chat.search(query, {before: more ? this.last : ''});
    } catch (err) {
      this.els.status.textContent = describeError(err, 'SearchMessages');
      return;
    }
    if (query !== this.query) return; // a newer search overtook this one
    for (const r of rep.results) this.els.list.append(this.item(r));
    if (rep.results.length) this.last = rep.results[rep.results.length - 1].m_time;
    const n = this.els.list.children.length;
    this.els.status.textContent = n ? `${n} message${n > 1 ? 's' : ''} found` : 'No messages found.';
    this.els.more.hidden = !rep.more;
  }

  item(r) {
    const c = this.chat.store.convo(r.CID);
    const d = parseWireTime(r.m_time);
    const snippet = (Array.isArray(r.snippet) ? r.snippet : []).map((p) =>
      (p.mark ? el('mark', {}, String(p.text)) : String(p.text)));
    return el('li', {}, el('button', {type: 'button', class: 'search-hit', dataset: {cid: r.CID, id: String(r.id)},
      onclick: () => this.open(r.CID, r.id)},
    el('span', {class: 'hit-head'},
      el('span', {class: 'hit-convo'}, c ? convoTitle(c, this.chat.me) : 'A conversation'),
      d ? el('time', {datetime: r.m_time, title: fullTime(d)}, clockTime(d)) : null),
    el('span', {class: 'hit-text'}, el('strong', {}, String(r.f_username)), ': ', el('span', {dir: 'auto'}, snippet))));
  }
}
