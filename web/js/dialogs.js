// Dialogs: new conversation, rename, members (add, remove, leave) and a confirmation. Each is a
// native <dialog> (focus trapping, Escape to close and the top layer come with it); errors show
// inside the dialog, in the server's words.

import {describeError} from './chat.js';
import {convoTitle} from './convolist.js';
import {el, hue, initials, parseNames, parseWireTime, shortTime, clockTime, fullTime, sameUser} from './util.js';

const $ = (id) => document.getElementById(id);

/**
 * PeoplePicker turns a text box into a list of usernames shown as removable chips: a name is
 * added with Enter, a comma or a space; Backspace in the empty box removes the last one.
 */
export class PeoplePicker {
  constructor(input, chips) {
    this.input = input;
    this.chips = chips;
    this.names = [];
    input.addEventListener('keydown', (e) => {
      if ((e.key === 'Enter' || e.key === ',' || e.key === ' ') && input.value.trim()) {
        e.preventDefault();
        this.take();
      } else if (e.key === 'Backspace' && !input.value && this.names.length) {
        this.remove(this.names[this.names.length - 1]);
      }
    });
    // Choosing from the datalist fires an input event with the whole name.
    input.addEventListener('change', () => this.take());
  }

  reset() {
    this.names = [];
    this.input.value = '';
    this.render();
  }

  /** take moves what is typed into chips; returns every name picked. */
  take() {
    for (const n of parseNames(this.input.value)) {
      if (!this.names.some((x) => sameUser(x, n))) this.names.push(n);
    }
    this.input.value = '';
    this.render();
    return this.names;
  }

  remove(name) {
    this.names = this.names.filter((n) => n !== name);
    this.render();
    this.input.focus();
  }

  render() {
    this.chips.replaceChildren(...this.names.map((n) => el('li', {class: 'chip'},
      el('span', {}, n),
      el('button', {type: 'button', 'aria-label': `Remove ${n}`, onclick: () => this.remove(n)}, '×'))));
  }
}

/** fillKnownUsers offers our friends and everyone we share a conversation with as suggestions. */
function fillKnownUsers(chat) {
  const seen = new Map();
  for (const c of chat.store.convos.find()) {
    for (const m of c.Members) if (!sameUser(m.username, chat.me)) seen.set(m.username.toUpperCase(), m.username);
  }
  const friends = chat.view && Array.isArray(chat.view.Friends) ? chat.view.Friends : [];
  for (const f of friends) if (f && typeof f.Username === 'string') seen.set(f.Username.toUpperCase(), f.Username);
  $('known-users').replaceChildren(...[...seen.values()].sort().map((n) => el('option', {value: n})));
}

/** submitting disables a form while its request runs, and shows its error in words. */
export async function submitting(form, fn) {
  const error = form.querySelector('.form-error');
  const buttons = form.querySelectorAll('button');
  error.textContent = '';
  buttons.forEach((b) => (b.disabled = true));
  try {
    await fn();
    return true;
  } catch (err) {
    error.textContent = describeError(err);
    return false;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

export class Dialogs {
  constructor(chat, {onOpenConvo, toast}) {
    this.chat = chat;
    this.onOpenConvo = onOpenConvo;
    this.toast = toast;
    this.cid = null;
    this.newPicker = new PeoplePicker($('new-people'), $('new-chips'));
    this.addPicker = new PeoplePicker($('add-people'), $('add-chips'));

    for (const d of document.querySelectorAll('dialog')) {
      d.querySelectorAll('[data-close]').forEach((b) => b.addEventListener('click', () => d.close('cancel')));
    }
    $('new-convo-form').addEventListener('submit', (e) => this.onCreate(e));
    $('rename-form').addEventListener('submit', (e) => this.onRename(e));
    $('add-form').addEventListener('submit', (e) => this.onAdd(e));
    $('leave-btn').addEventListener('click', () => this.onLeave());
    chat.addEventListener('convo', (e) => {
      if ($('members-dialog').open && e.detail.cid === this.cid) this.renderMembers();
    });
    chat.addEventListener('removed', (e) => {
      if (e.detail.cid === this.cid) for (const d of document.querySelectorAll('dialog[open]')) d.close();
    });
  }

  openNewConvo() {
    const form = $('new-convo-form');
    form.reset();
    form.querySelector('.form-error').textContent = '';
    this.newPicker.reset();
    fillKnownUsers(this.chat);
    $('new-convo-dialog').showModal();
    $('new-name').focus();
  }

  async onCreate(e) {
    e.preventDefault();
    const form = e.target;
    const names = this.newPicker.take();
    const name = $('new-name').value.trim();
    const others = names.filter((n) => !sameUser(n, this.chat.me));
    if (!others.length) {
      form.querySelector('.form-error').textContent = 'Add at least one person to talk to.';
      $('new-people').focus();
      return;
    }
    // One conversation per pair of people: talking to someone again continues where you left
    // off. Groups may repeat (the same people can have several topics).
    const existing = others.length === 1 ? this.chat.directConvo(others[0]) : null;
    if (existing) {
      $('new-convo-dialog').close();
      this.onOpenConvo(existing.CID);
      this.toast(`You already have a conversation with ${others[0]}; here it is.`, 'info');
      return;
    }
    let cid = null;
    const ok = await submitting(form, async () => {
      cid = await this.chat.createConvo(name, names);
    });
    if (ok) {
      $('new-convo-dialog').close();
      this.onOpenConvo(cid);
    }
  }

  openRename(cid) {
    this.cid = cid;
    const c = this.chat.store.convo(cid);
    const form = $('rename-form');
    form.querySelector('.form-error').textContent = '';
    $('rename-input').value = c ? c.Name : '';
    $('rename-dialog').showModal();
    $('rename-input').select();
  }

  async onRename(e) {
    e.preventDefault();
    const name = $('rename-input').value.trim();
    if (await submitting(e.target, () => this.chat.rename(this.cid, name))) $('rename-dialog').close();
  }

  openMembers(cid) {
    this.cid = cid;
    $('add-form').querySelector('.form-error').textContent = '';
    this.addPicker.reset();
    fillKnownUsers(this.chat);
    this.renderMembers();
    $('members-dialog').showModal();
    $('add-people').focus();
  }

  renderMembers() {
    const c = this.chat.store.convo(this.cid);
    if (!c) return;
    $('members-title').textContent = `Members of ${convoTitle(c, this.chat.me)}`;
    $('member-list').replaceChildren(...c.Members.map((m) => {
      const you = sameUser(m.username, this.chat.me);
      const read = parseWireTime(m.read_time);
      const avatar = el('span', {class: 'avatar small', 'aria-hidden': 'true'}, initials(m.username));
      avatar.style.setProperty('--hue', hue(m.username));
      return el('li', {class: 'member'},
        avatar,
        el('span', {class: 'member-text'},
          el('span', {class: 'member-name'}, you ? `${m.username} (you)` : m.username),
          el('span', {class: 'sub', title: read ? fullTime(read) : ''}, readLabel(read))),
        you ? null : el('button', {
          type: 'button', class: 'ghost danger', 'aria-label': `Remove ${m.username}`,
          onclick: () => this.onRemove(m.username),
        }, 'Remove'));
    }));
  }

  async onAdd(e) {
    e.preventDefault();
    const names = this.addPicker.take();
    if (!names.length) return;
    let refused = null;
    const ok = await submitting(e.target, async () => {
      try {
        await this.chat.addMembers(this.cid, names);
      } catch (err) {
        refused = err;
        throw err;
      }
    });
    if (ok) {
      this.addPicker.reset();
      this.toast(`Added ${names.join(', ')}.`, 'info');
    } else if (refused) {
      // The server names the person it refused (no such user, cannot be added): take them out
      // of the picker, so that the next Add does not fail on them again. The error says why.
      for (const n of names) if (mentions(refused.message, n)) this.addPicker.remove(n);
    }
  }

  async onRemove(username) {
    if (!(await confirmDialog(`Remove ${username} from this conversation?`, 'Remove'))) return;
    await submitting($('add-form'), () => this.chat.removeMember(this.cid, username));
  }

  async onLeave() {
    const c = this.chat.store.convo(this.cid);
    const title = c ? convoTitle(c, this.chat.me) : 'this conversation';
    if (!(await confirmDialog(`Leave “${title}”? You will no longer see its messages.`, 'Leave'))) return;
    if (await submitting($('add-form'), () => this.chat.leave(this.cid))) $('members-dialog').close();
  }
}

/** mentions tells whether text names a username as a whole word (not inside a longer name). */
function mentions(text, name) {
  const hay = text.toUpperCase();
  const needle = name.toUpperCase();
  const word = /[A-Z0-9_]/;
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) {
    const before = hay[i - 1] || ' ';
    const after = hay[i + needle.length] || ' ';
    if (!word.test(before) && !word.test(after)) return true;
  }
  return false;
}

/** readLabel: how far a member has read, briefly ("Read up to 14:05", "Read up to yesterday,
 * 09:12", "Read up to 3 Mar, 09:12"). */
function readLabel(d) {
  if (!d) return 'Has not read anything yet';
  const day = shortTime(d);
  const clock = clockTime(d);
  if (day === clock) return `Read up to ${clock}`;
  return `Read up to ${day === 'Yesterday' ? 'yesterday' : day}, ${clock}`;
}

/** confirmDialog asks a yes/no question in a dialog; resolves true for yes. */
export function confirmDialog(question, yes) {
  const d = $('confirm-dialog');
  $('confirm-text').textContent = question;
  $('confirm-yes').textContent = yes;
  d.returnValue = '';
  d.showModal();
  $('confirm-no').focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'yes'), {once: true});
  });
}
