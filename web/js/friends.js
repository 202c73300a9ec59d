// The friends dialog: requests to answer, friends (start a chat, remove), requests sent, finding
// people by username, e-mail or phone number, and finding the people of an address book (a
// vCard or CSV file read in the browser; contacts.js). The lists are the user view's
// (DESIGN §3.3), kept current by the server's UpdateUser pushes, which every friend command
// causes for both people: the dialog re-renders from those, not from the replies.

import {ServerError} from './conn.js';
import {submitting, confirmDialog} from './dialogs.js';
import {parseContacts, matchRequests, normalPhone, normalEmail} from './contacts.js';
import {el, hue, initials, sameUser} from './util.js';

const $ = (id) => document.getElementById(id);

const USERNAME_RE = /^@?[A-Za-z0-9_]{3,32}$/;
const MAX_MATCH = 500; // entries per MatchUsers call (DESIGN §3.2)
const MAX_FILE = 10 * 1024 * 1024; // an address book with photos is large; more is not one
const CC_KEY = 'contactsCountryCode';

/** names lists the usernames of one of the view's friend lists. */
function listOf(view, key) {
  return view && Array.isArray(view[key]) ? view[key].filter((f) => f && typeof f.Username === 'string') : [];
}

function avatarOf(name) {
  const a = el('span', {class: 'avatar small', 'aria-hidden': 'true'}, initials(name));
  a.style.setProperty('--hue', hue(name));
  return a;
}

/** personItem is one row of a people list: avatar, name, a line under it, and actions. */
function personItem(name, sub, ...actions) {
  return el('li', {class: 'member person', dataset: {user: name}},
    avatarOf(name),
    el('span', {class: 'member-text'},
      el('span', {class: 'member-name'}, name),
      sub ? el('span', {class: 'sub'}, sub) : null),
    el('span', {class: 'person-actions'}, ...actions));
}

export class Friends {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {function(string)} opts.announce
   * @param {function(string)} opts.openConvo  shows a conversation (the dialog is closed first)
   */
  constructor(chat, {toast, announce, openConvo}) {
    this.chat = chat;
    this.toast = toast;
    this.announce = announce;
    this.openConvo = openConvo;
    this.dialog = $('friends-dialog');
    this.found = []; // the last search: [{Username, sub}]
    this.matches = []; // the last address book search: [{Username, sub}]
    this.seen = null; // {me, incoming: Set, outgoing: Set}: to tell what a new view changed
    this.refocus = ''; // after an action: the person whose row should get the focus back

    chat.addEventListener('user', () => this.onView());
    chat.addEventListener('status', () => {
      if (this.dialog.open) this.renderNote();
    });
    $('friends-btn').addEventListener('click', () => this.open());
    $('find-form').addEventListener('submit', (e) => this.onFind(e));
    $('contacts-form').addEventListener('submit', (e) => this.onContacts(e));
    $('contacts-file').addEventListener('change', () => this.onFile());
  }

  get view() {
    return this.chat.view || {};
  }

  open() {
    for (const form of this.dialog.querySelectorAll('form')) {
      form.querySelector('.form-error').textContent = '';
      const ok = form.querySelector('.form-ok');
      if (ok) ok.textContent = '';
    }
    const cc = this.chat.store ? this.chat.store.getMeta(CC_KEY, '') : '';
    $('contacts-cc').value = cc || '';
    this.refocus = '';
    this.render();
    this.dialog.showModal();
    this.dialog.querySelector('.dialog-head [data-close]').focus();
  }

  /** onView follows a new user view: the badge, a note about what changed, the dialog. */
  onView() {
    const v = this.view;
    const incoming = new Set(listOf(v, 'IncomingPendingFriends').map((f) => f.Username.toUpperCase()));
    const outgoing = new Set(listOf(v, 'OutgoingPendingFriends').map((f) => f.Username.toUpperCase()));
    const friends = listOf(v, 'Friends');
    const before = this.seen && sameUser(this.seen.me, v.Username) ? this.seen : null;
    if (before) {
      for (const f of listOf(v, 'IncomingPendingFriends')) {
        if (!before.incoming.has(f.Username.toUpperCase())) this.note(`${f.Username} wants to be your friend.`);
      }
      for (const f of friends) {
        if (before.outgoing.has(f.Username.toUpperCase())) this.note(`${f.Username} accepted your friend request.`);
      }
    }
    this.seen = {me: v.Username, incoming, outgoing};
    this.renderBadge(incoming.size);
    if (this.dialog.open) this.render();
  }

  note(text) {
    this.toast(text, 'info');
    this.announce(text);
  }

  renderBadge(n) {
    const badge = $('friends-badge');
    badge.textContent = n > 99 ? '99+' : String(n);
    badge.hidden = n === 0;
    $('friends-btn').setAttribute('aria-label', n ? `Friends, ${n} new request${n > 1 ? 's' : ''}` : 'Friends');
  }

  // Rendering

  render() {
    const v = this.view;
    this.renderNote();
    const incoming = listOf(v, 'IncomingPendingFriends');
    const friends = listOf(v, 'Friends');
    const outgoing = listOf(v, 'OutgoingPendingFriends');

    $('incoming-section').hidden = incoming.length === 0;
    $('incoming-count').textContent = incoming.length ? String(incoming.length) : '';
    $('incoming-list').replaceChildren(...incoming.map((f) => personItem(f.Username,
      f.Message ? `“${f.Message}”` : 'Wants to be your friend',
      el('button', {
        type: 'button', class: 'primary small', 'aria-label': `Accept ${f.Username}`,
        onclick: () => this.act($('incoming-form'), f.Username, 'AcceptFriendRequest', `${f.Username} is your friend now.`),
      }, 'Accept'),
      el('button', {
        type: 'button', class: 'ghost', 'aria-label': `Decline ${f.Username}`,
        onclick: () => this.act($('incoming-form'), f.Username, 'DenyFriendRequest', `Declined ${f.Username}'s request.`),
      }, 'Decline'))));

    $('friend-list').replaceChildren(...friends.map((f) => personItem(f.Username, '',
      this.chatButton(f.Username, $('friend-form')),
      el('button', {
        type: 'button', class: 'ghost danger', 'aria-label': `Remove ${f.Username} from your friends`,
        onclick: () => this.onRemove(f.Username),
      }, 'Remove'))));
    $('friend-empty').hidden = friends.length > 0;
    $('friend-count').textContent = friends.length ? String(friends.length) : '';

    $('outgoing-section').hidden = outgoing.length === 0;
    $('outgoing-list').replaceChildren(...outgoing.map((f) => personItem(f.Username, 'Waiting for an answer',
      el('button', {
        type: 'button', class: 'ghost', 'aria-label': `Cancel your request to ${f.Username}`,
        onclick: () => this.act($('outgoing-form'), f.Username, 'RemoveFriend', `Request to ${f.Username} cancelled.`),
      }, 'Cancel'))));

    this.renderPeople($('find-results'), this.found, $('find-form'));
    this.renderPeople($('contacts-results'), this.matches, $('contacts-form'));

    if (this.refocus) {
      // The row acted on moved to another list (accepted: now a friend) or went away.
      const button = this.dialog.querySelector(`[data-user="${CSS.escape(this.refocus)}"] button`);
      if (button) button.focus();
      else if (!this.dialog.contains(document.activeElement)) this.dialog.querySelector('.dialog-head [data-close]').focus();
      this.refocus = '';
    }
  }

  renderNote() {
    const note = $('friends-note');
    let text = '';
    if (!this.chat.view) text = 'Your friends load once you are online.';
    else if (!this.chat.loggedIn) text = 'You are offline: friend requests can be sent once the connection is back.';
    note.textContent = text;
    note.hidden = !text;
  }

  /** relation says what we are to a user, and what can be done about it. */
  relation(name) {
    const v = this.view;
    const inList = (key) => listOf(v, key).some((f) => sameUser(f.Username, name));
    if (sameUser(name, this.chat.me)) return 'me';
    if (inList('Friends')) return 'friend';
    if (inList('IncomingPendingFriends')) return 'incoming';
    if (inList('OutgoingPendingFriends')) return 'outgoing';
    return 'none';
  }

  /** renderPeople shows search results, each with what can be done: add, accept, or chat. */
  renderPeople(list, people, form) {
    list.replaceChildren(...people.map((p) => {
      const name = p.Username;
      let action;
      switch (this.relation(name)) {
        case 'me':
          action = el('span', {class: 'pill'}, 'You');
          break;
        case 'friend':
          action = this.chatButton(name, form);
          break;
        case 'incoming':
          action = el('button', {
            type: 'button', class: 'primary small', 'aria-label': `Accept ${name}'s friend request`,
            onclick: () => this.act(form, name, 'AcceptFriendRequest', `${name} is your friend now.`),
          }, 'Accept request');
          break;
        case 'outgoing':
          action = el('span', {class: 'pill', dataset: {state: 'on'}}, 'Request sent');
          break;
        default:
          action = el('button', {
            type: 'button', class: 'primary small', 'aria-label': `Add ${name} as a friend`,
            onclick: () => this.onAdd(form, name),
          }, 'Add friend');
      }
      return personItem(name, p.sub, action);
    }));
  }

  chatButton(name, form) {
    return el('button', {
      type: 'button', class: 'primary small', 'aria-label': `Start a chat with ${name}`,
      onclick: () => this.onChat(form, name),
    }, 'Chat');
  }

  // Actions

  /** act runs one friend command about a user; the lists change with the UpdateUser push. */
  async act(form, name, cmd, done, fields = {}) {
    form.querySelector('.form-ok').textContent = '';
    this.refocus = name;
    const ok = await submitting(form, async () => {
      this.chat.requireOnline(cmd);
      await this.chat.request(cmd, {friend_UID: name, ...fields});
    });
    if (ok) form.querySelector('.form-ok').textContent = done;
    else this.refocus = '';
    return ok;
  }

  onAdd(form, name) {
    const message = $('friend-message').value.trim();
    return this.act(form, name, 'AddFriend', `Friend request sent to ${name}.`, {Message: message});
  }

  async onRemove(name) {
    if (!(await confirmDialog(`Remove ${name} from your friends?`, 'Remove'))) return;
    this.act($('friend-form'), name, 'RemoveFriend', `${name} is no longer your friend.`);
  }

  /** onChat opens our conversation with a friend, or starts one. */
  async onChat(form, name) {
    let cid = '';
    const ok = await submitting(form, async () => {
      const existing = this.chat.directConvo(name);
      cid = existing ? existing.CID : await this.chat.createConvo('', [name]);
    });
    if (!ok) return;
    this.dialog.close();
    this.openConvo(cid);
  }

  // Finding people

  async onFind(e) {
    e.preventDefault();
    const form = e.target;
    const q = $('find-input').value.trim();
    const none = $('find-none');
    none.textContent = '';
    form.querySelector('.form-ok').textContent = '';
    const refuse = (text) => {
      form.querySelector('.form-error').textContent = text;
      $('find-input').focus();
    };
    let cmd;
    let fields;
    let missing;
    if (!q) {
      refuse('Type a username, an e-mail address or a phone number.');
      return;
    } else if (USERNAME_RE.test(q)) {
      const name = q.replace(/^@/, '');
      cmd = 'GetUserByUsername';
      fields = {username: name};
      missing = `Nobody here is called ${name}. Usernames are matched exactly.`;
    } else if (q.includes('@')) {
      const email = normalEmail(q);
      if (!email) {
        refuse('That is not an e-mail address.');
        return;
      }
      cmd = 'GetUserByEmail';
      fields = {email};
      missing = `Nobody has verified ${email} here.`;
    } else {
      const phone = normalPhone(q);
      if (!phone) {
        refuse(/^[\d\s().-]+$/.test(q)
          ? 'Write the number in the international form: a plus, the country code, then the number (+15551234567).'
          : 'That is not a username (3 to 32 letters, digits or underscores), an e-mail address or a phone number.');
        return;
      }
      cmd = 'MatchUsers';
      fields = {Phones: [{Name: '', PhoneNum: phone}], Emails: []};
      missing = `Nobody has verified ${phone} here.`;
    }
    let people = [];
    const ok = await submitting(form, async () => {
      this.chat.requireOnline(cmd);
      let rep;
      try {
        rep = await this.chat.request(cmd, fields);
      } catch (err) {
        if (err instanceof ServerError && /no such user/i.test(err.message)) return;
        throw err;
      }
      const users = cmd === 'MatchUsers' ? (Array.isArray(rep.Users) ? rep.Users : []) : [rep];
      people = users.filter((u) => u && typeof u.Username === 'string').map((u) => ({
        Username: u.Username, sub: cmd === 'GetUserByUsername' ? '' : (u.Email || u.Phone || fields.email || ''),
      }));
    });
    if (!ok) return;
    this.found = people;
    none.textContent = people.length ? '' : missing;
    this.renderPeople($('find-results'), this.found, form);
    const first = $('find-results').querySelector('button');
    if (first) first.focus();
  }

  // Finding the people of an address book

  async onFile() {
    const input = $('contacts-file');
    const file = input.files && input.files[0];
    if (!file) return;
    const form = $('contacts-form');
    if (file.size > MAX_FILE) {
      form.querySelector('.form-error').textContent = `${file.name} is too large (at most ${MAX_FILE / 1024 / 1024} MB).`;
      return;
    }
    let text;
    try {
      text = await file.text();
    } catch (err) {
      form.querySelector('.form-error').textContent = `Couldn't read ${file.name}: ${err.message}`;
      return;
    }
    await this.findContacts(text, file.name);
    input.value = ''; // picking the same file again searches again
  }

  onContacts(e) {
    e.preventDefault();
    const text = $('contacts-text').value;
    if (!text.trim()) {
      const form = e.target;
      form.querySelector('.form-ok').textContent = '';
      form.querySelector('.form-error').textContent = 'Paste your contacts (vCard or CSV), or pick the file.';
      $('contacts-text').focus();
      return;
    }
    this.findContacts(text, 'What you pasted');
  }

  /** findContacts reads contacts and asks the server which of them are here, at most 500
   * addresses and numbers a call. Only the addresses and numbers are sent (contacts.js). */
  async findContacts(text, source) {
    const form = $('contacts-form');
    const ok = form.querySelector('.form-ok');
    ok.textContent = '';
    form.querySelector('.form-error').textContent = '';
    const countryCode = $('contacts-cc').value.trim();
    if (countryCode && !/^\+?[1-9][0-9]{0,2}$/.test(countryCode)) {
      form.querySelector('.form-error').textContent = 'A country code is a plus and one to three digits, like +1 or +44.';
      $('contacts-cc').focus();
      return;
    }
    if (this.chat.store) this.chat.store.setMeta(CC_KEY, countryCode);
    const contacts = parseContacts(text);
    const {requests, refs, emails, phones, skipped} = matchRequests(contacts, {countryCode, max: MAX_MATCH});
    if (!requests.length) {
      form.querySelector('.form-error').textContent = skipped
        ? `${source} has ${skipped} phone number${skipped > 1 ? 's' : ''} without a country code: give yours above to look them up.`
        : `${source} has no e-mail addresses or phone numbers that could be read (a vCard .vcf or a CSV file is needed).`;
      return;
    }
    const byUser = new Map(); // upper-case username → {Username, names: Set, values: Set}
    let done = false;
    const worked = await submitting(form, async () => {
      this.chat.requireOnline('MatchUsers');
      for (const [i, req] of requests.entries()) {
        if (requests.length > 1) ok.textContent = `Looking up part ${i + 1} of ${requests.length}…`;
        const rep = await this.chat.request('MatchUsers', req);
        for (const u of Array.isArray(rep.Users) ? rep.Users : []) {
          if (!u || typeof u.Username !== 'string') continue;
          const ref = refs.get(u.Name);
          const key = u.Username.toUpperCase();
          if (!byUser.has(key)) byUser.set(key, {Username: u.Username, names: new Set(), values: new Set()});
          const entry = byUser.get(key);
          if (ref && ref.name) entry.names.add(ref.name);
          entry.values.add(u.Email || u.Phone || (ref ? ref.value : ''));
        }
      }
      done = true;
    });
    if (!worked && !done && !byUser.size) {
      ok.textContent = '';
      return;
    }
    this.matches = [...byUser.values()]
      .filter((u) => !sameUser(u.Username, this.chat.me))
      .sort((a, b) => a.Username.localeCompare(b.Username))
      .map((u) => {
        // E-mail addresses before phone numbers, whatever order the server answered in.
        const values = [...u.values].filter(Boolean).sort((a, b) => b.includes('@') - a.includes('@') || a.localeCompare(b));
        return {Username: u.Username, sub: [...u.names, ...values].join(' · ')};
      });
    const looked = [emails && `${emails} e-mail address${emails > 1 ? 'es' : ''}`,
      phones && `${phones} phone number${phones > 1 ? 's' : ''}`].filter(Boolean).join(' and ');
    const n = this.matches.length;
    let summary = `Looked up ${looked} from ${contacts.length} contact${contacts.length > 1 ? 's' : ''}: ` +
      (n ? `${n} ${n > 1 ? 'people are' : 'person is'} here.` : 'none of them is here yet.');
    if (skipped) summary += ` ${skipped} number${skipped > 1 ? 's' : ''} without a country code ${skipped > 1 ? 'were' : 'was'} skipped.`;
    ok.textContent = worked ? summary : '';
    this.renderPeople($('contacts-results'), this.matches, form);
    // The answer is below the button, maybe out of sight in the dialog: bring it into view.
    ($('contacts-results').firstElementChild || ok).scrollIntoView({block: 'nearest'});
  }
}
