// Actions on a message (DESIGN §3.2): reply, react, edit, delete, copy, from a toolbar that
// shows on hover, on keyboard focus, or after a long press on a touch screen; the bar above the
// composer that says which message a reply answers; and @-completion of members' names.
//
// Everything from the server is inserted as text (util.el), never as HTML.

import {describeError} from './chat.js';
import {confirmDialog} from './dialogs.js';
import {el, sameUser} from './util.js';

export const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢'];
const LONG_PRESS_MS = 500;

export class MessageActions {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts  toast(text), onReply(record)
   */
  constructor(chat, {toast, onReply}) {
    this.chat = chat;
    this.toast = toast;
    this.onReply = onReply;
    // A tap elsewhere closes a toolbar opened by a long press.
    document.addEventListener('touchstart', (e) => {
      for (const li of document.querySelectorAll('.msg.show-actions')) {
        if (!li.contains(e.target)) li.classList.remove('show-actions');
      }
    }, {passive: true});
  }

  /** toolbar builds a message's actions (the message must be stored: it has an id). */
  toolbar(r, li) {
    const mine = sameUser(r.f_username, this.chat.me);
    const picker = el('div', {class: 'emoji-picker', role: 'group', 'aria-label': 'React with', hidden: true},
      QUICK_EMOJI.map((e) => el('button', {type: 'button', class: 'emoji-btn', 'aria-label': `React with ${e}`,
        onclick: () => {
          picker.hidden = true;
          const had = (r.reactions || []).some((x) => x.emoji === e && x.users.some((u) => sameUser(u, this.chat.me)));
          this.react(r, e, !had);
        }}, e)));
    const bar = el('div', {class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions'},
      el('button', {type: 'button', class: 'act reply', onclick: () => this.onReply(r)}, 'Reply'),
      el('button', {type: 'button', class: 'act react', 'aria-expanded': 'false',
        onclick: (e) => {
          picker.hidden = !picker.hidden;
          e.currentTarget.setAttribute('aria-expanded', String(!picker.hidden));
        }}, 'React'),
      mine && (r.kind || 'text') === 'text'
        ? el('button', {type: 'button', class: 'act edit', onclick: () => this.startEdit(r, li)}, 'Edit') : null,
      mine ? el('button', {type: 'button', class: 'act delete', onclick: () => this.remove(r)}, 'Delete') : null,
      el('button', {type: 'button', class: 'act copy', onclick: () => this.copy(r)}, 'Copy'),
      picker,
    );
    let timer = 0;
    li.addEventListener('touchstart', () => {
      timer = setTimeout(() => li.classList.add('show-actions'), LONG_PRESS_MS);
    }, {passive: true});
    for (const ev of ['touchend', 'touchmove', 'touchcancel']) li.addEventListener(ev, () => clearTimeout(timer), {passive: true});
    return bar;
  }

  async react(r, emoji, on) {
    try {
      await this.chat.react(r, emoji, on);
    } catch (err) {
      this.toast(describeError(err, 'React'));
    }
  }

  async remove(r) {
    if (!(await confirmDialog('Delete this message for everyone?', 'Delete'))) return;
    try {
      await this.chat.deleteMessage(r);
    } catch (err) {
      this.toast(describeError(err, 'DeleteMessage'));
    }
  }

  async copy(r) {
    try {
      await navigator.clipboard.writeText(r.content);
      this.toast('Copied.');
    } catch (err) {
      this.toast(`Couldn't copy: ${err.message}`);
    }
  }

  /** startEdit replaces the message's text with an editor: Enter saves, Escape cancels. The
   * message is redrawn when the change comes back from the server. */
  startEdit(r, li) {
    const text = li.querySelector('.text');
    if (!text || li.querySelector('.editor')) return;
    const input = el('textarea', {class: 'edit-input', rows: '2', 'aria-label': 'Edit message'});
    input.value = r.content;
    const cancel = () => editor.replaceWith(text);
    const save = async () => {
      const content = input.value;
      if (content === r.content) return cancel();
      try {
        await this.chat.editMessage(r, content);
        if (editor.isConnected) cancel();
      } catch (err) {
        this.toast(describeError(err, 'EditMessage'));
      }
    };
    const editor = el('div', {class: 'editor'}, input,
      el('div', {class: 'editor-buttons'},
        el('button', {type: 'button', class: 'ghost', onclick: cancel}, 'Cancel'),
        el('button', {type: 'button', class: 'primary save-edit', onclick: save}, 'Save')));
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        save();
      } else if (e.key === 'Escape') {
        e.preventDefault();
        cancel();
      }
    });
    text.replaceWith(editor);
    input.focus();
  }
}

/** ReplyBar is the line above the composer naming the message being answered. */
export class ReplyBar {
  constructor(els) {
    this.els = els; // bar, text, cancel
    this.record = null;
    els.cancel.addEventListener('click', () => this.clear());
  }

  set(record) {
    this.record = record;
    this.els.text.replaceChildren(el('strong', {}, record.f_username), ': ', record.content.slice(0, 100));
    this.els.bar.hidden = false;
  }

  clear() {
    this.record = null;
    this.els.bar.hidden = true;
  }
}

/**
 * MentionCompleter offers the open conversation's members when the word at the caret starts
 * with @: a click, Tab or Enter takes the first (or the chosen) name.
 */
export class MentionCompleter {
  constructor(chat, input, list) {
    this.chat = chat;
    this.input = input;
    this.list = list;
    this.names = [];
    input.addEventListener('input', () => this.update());
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    // Capture: before the composer's own Enter handler sends the message.
    input.addEventListener('keydown', (e) => {
      if (this.list.hidden || !this.names.length) return;
      if (e.key === 'Tab' || e.key === 'Enter') {
        e.preventDefault();
        e.stopImmediatePropagation();
        this.take(this.names[0]);
      } else if (e.key === 'Escape') {
        e.stopImmediatePropagation();
        this.close();
      }
    }, true);
  }

  /** word is the @-word before the caret: {start, prefix}, or null. */
  word() {
    const upto = this.input.value.slice(0, this.input.selectionStart);
    const m = /(^|\s)@([A-Za-z0-9_]{0,32})$/.exec(upto);
    return m ? {start: upto.length - m[2].length - 1, prefix: m[2]} : null;
  }

  update() {
    const w = this.word();
    const c = w && this.chat.openCid && this.chat.store.convo(this.chat.openCid);
    if (!c) return this.close();
    const p = w.prefix.toUpperCase();
    this.names = c.Members.map((m) => m.username)
      .filter((n) => !sameUser(n, this.chat.me) && n.toUpperCase().startsWith(p)).slice(0, 8);
    if (!this.names.length) return this.close();
    this.list.replaceChildren(...this.names.map((n) => el('li', {},
      el('button', {type: 'button', class: 'mention-option', onmousedown: (e) => e.preventDefault(),
        onclick: () => this.take(n)}, `@${n}`))));
    this.list.hidden = false;
  }

  take(name) {
    const w = this.word();
    if (!w) return this.close();
    const v = this.input.value;
    const end = this.input.selectionStart;
    this.input.value = `${v.slice(0, w.start)}@${name} ${v.slice(end)}`;
    const caret = w.start + name.length + 2;
    this.input.setSelectionRange(caret, caret);
    this.close();
    this.input.focus();
  }

  close() {
    this.list.hidden = true;
    this.names = [];
  }
}
