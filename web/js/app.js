// pingedchat web client: start-up and the views. The model is chat.js (logins, sync, outbox),
// the socket conn.js, the device copy store.js; this module wires them to the page.
//
// URL parameters: ?transports=xhr-streaming,xhr-polling limits SockJS to those transports (for
// networks or proxies that break websockets, and for the tests).

import {Connection} from './conn.js';
import {Chat, describeError} from './chat.js';
import {ConvoList, convoTitle} from './convolist.js';
import {MessageView} from './messages.js';
import {Dialogs, confirmDialog} from './dialogs.js';
import {el, hue, initials, listNames, sameUser, codePoints} from './util.js';

const $ = (id) => document.getElementById(id);

const SECURITY_QUESTIONS = [
  'What was the name of your first pet?',
  'In what city were you born?',
  'What is the title of your favourite book?',
  'What was the make of your first car?',
  'What street did you grow up on?',
  'What was the name of your first school?',
];

const phone = window.matchMedia('(max-width: 760px)');

// Toasts and announcements

/** toast shows a message for a while; errors stay longer. Text only. */
function toast(text, kind = 'error') {
  const box = el('div', {class: `toast ${kind}`},
    el('p', {}, text),
    el('button', {type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => box.remove()}, '×'));
  $('toasts').append(box);
  while ($('toasts').children.length > 4) $('toasts').firstElementChild.remove();
  setTimeout(() => box.remove(), kind === 'error' ? 10_000 : 5000);
  if (kind === 'error') console.warn('pingedchat:', text);
}

/** announce tells screen-reader users about something they cannot see (a polite live log). */
function announce(text) {
  const log = $('announcer');
  log.append(el('p', {}, text));
  while (log.children.length > 5) log.firstElementChild.remove();
}

// Only one tab may own the device copy: LokiJS keeps the database in memory and saves it whole,
// so two tabs would overwrite each other's changes (and unsent messages).

const TAB_LOCK = 'pingedchat-tab';

function holdTabLock(steal = false) {
  return new Promise((resolve) => {
    navigator.locks.request(TAB_LOCK, steal ? {steal: true} : {}, () => {
      resolve();
      return new Promise(() => {}); // held for the life of the page
    }).catch(() => lostTabLock());
  });
}

async function acquireTabLock() {
  if (!navigator.locks) return; // not a secure context: take the risk rather than refuse
  const overlay = $('tab-lock');
  const shown = setTimeout(() => {
    $('boot').hidden = true;
    overlay.hidden = false;
    $('tab-lock-btn').focus();
  }, 400); // a reloading tab frees the lock a moment later: do not flash the overlay for that
  const stolen = new Promise((resolve) => {
    $('tab-lock-btn').onclick = () => holdTabLock(true).then(resolve);
  });
  await Promise.race([holdTabLock(), stolen]);
  clearTimeout(shown);
  overlay.hidden = true;
}

let app = null;

function lostTabLock() {
  if (app) app.suspend();
  $('tab-lock-text').textContent = 'pingedchat was opened in another tab or window.';
  $('tab-lock-btn').onclick = () => location.reload();
  $('tab-lock').hidden = false;
}

class App {
  constructor() {
    const params = new URLSearchParams(location.search);
    const transports = (params.get('transports') || '').split(',').map((s) => s.trim()).filter(Boolean);
    this.conn = new Connection({url: new URL('ws', location.href).href, transports: transports.length ? transports : undefined});
    this.chat = new Chat(this.conn);
    this.drafts = new Map();
    this.shownUser = '';
    this.attentive = false;

    this.list = new ConvoList(this.chat, {list: $('convo-list'), empty: $('convo-empty'), filter: $('convo-filter')},
      (cid) => this.openConvo(cid, {focus: true}));
    this.messages = new MessageView(this.chat, {
      scroller: $('scroller'), list: $('messages'), note: $('history-note'), jump: $('jump-btn'), typing: $('typing'),
    });
    this.messages.onAttention = () => this.updateAttention();
    this.dialogs = new Dialogs(this.chat, {onOpenConvo: (cid) => this.openConvo(cid, {focus: true}), toast});

    this.bindChat();
    this.bindAuthView();
    this.bindChatView();
    // A hook for tests and debugging in the console: flush() resolves once the device copy is
    // written to IndexedDB.
    window.pingedchat = {chat: this.chat, conn: this.conn, flush: () => (this.chat.store ? this.chat.store.save() : null)};
  }

  async start() {
    const user = this.chat.savedUser;
    if (user) {
      // Show the last state from the device at once; the socket catches up behind it.
      try {
        await this.chat.prepare(user);
        this.showChat(user);
        const last = this.chat.store.getMeta('openCid');
        if (last && this.chat.store.convo(last)) this.openConvo(last, {focus: false});
      } catch (err) {
        toast(`Couldn't open the messages stored on this device: ${err.message}`);
      }
      if (!this.chat.auth.session) this.showAuth('Your session has ended; log in again.');
    } else {
      this.showAuth('');
    }
    $('boot').hidden = true;
    this.conn.start();
  }

  /** suspend stops everything when another tab takes over. */
  suspend() {
    this.conn.stop();
    if (this.chat.store) this.chat.store.close();
  }

  bindChat() {
    const chat = this.chat;
    chat.addEventListener('status', (e) => this.showStatus(e.detail));
    chat.addEventListener('loggedin', (e) => this.showChat(e.detail.username));
    chat.addEventListener('authrequired', (e) => this.showAuth(e.detail.message));
    chat.addEventListener('convos', () => this.list.schedule());
    chat.addEventListener('convo', (e) => {
      if (e.detail.cid !== chat.openCid) return;
      this.renderHeader();
      this.messages.renderReceipts();
    });
    chat.addEventListener('message', (e) => this.messages.onMessage(e.detail.record));
    chat.addEventListener('reset', (e) => {
      if (e.detail.cid === this.messages.cid) this.messages.reload();
    });
    chat.addEventListener('typing', (e) => {
      if (e.detail.cid === this.messages.cid) this.messages.renderTyping();
    });
    chat.addEventListener('removed', (e) => {
      const {cid, name} = e.detail;
      if (cid === this.messages.cid) this.closeConvo();
      toast(`You are no longer a member of “${name || 'a conversation'}”.`, 'info');
    });
    chat.addEventListener('incoming', (e) => {
      const {cid, record} = e.detail;
      const c = chat.store.convo(cid);
      const where = cid === chat.openCid ? '' : ` in ${c ? convoTitle(c, chat.me) : 'a conversation'}`;
      announce(`${record.f_username}${where}: ${record.content.slice(0, 300)}`);
    });
    chat.addEventListener('problem', (e) => toast(e.detail.text));
  }

  // Status

  showStatus({state, transport, queued}) {
    document.body.dataset.conn = state;
    document.body.dataset.transport = transport || '';
    const words = {
      offline: 'Offline', waiting: 'Reconnecting…', connecting: 'Connecting…', connected: 'Connected',
      authenticating: 'Logging in…', syncing: 'Syncing…', online: 'Online',
    };
    let text = words[state] || state;
    if (queued && state !== 'online') text += ` · ${queued} waiting to send`;
    $('conn-text').textContent = text;
    $('conn-status').dataset.state = state;
    $('conn-status').title = transport ? `Connected over ${transport}` : '';
    $('auth-conn').textContent = state === 'connected' || state === 'online' ? '' : `Server: ${text}`;
    // In the conversation too (on a phone the sidebar's status is out of sight): why messages wait.
    // Shown from the first failure until logged in again, not while a healthy start connects.
    if (state === 'offline' || state === 'waiting') this.away = true;
    if (state === 'authenticating' || state === 'syncing' || state === 'online') this.away = false;
    const away = !!this.away;
    $('chat-conn').hidden = !away;
    $('chat-conn').textContent = away
      ? `${state === 'offline' ? 'You are offline.' : 'Reconnecting…'} New messages will be sent when the connection is back.`
      : '';
    this.messages.refreshStates();
  }

  // Logging in and registering

  showAuth(message) {
    $('auth-view').hidden = false;
    $('chat-view').hidden = true;
    const user = this.chat.savedUser;
    if (user && !$('login-username').value) $('login-username').value = user;
    this.selectTab('login');
    $('login-form').querySelector('.form-error').textContent = message || '';
    (user ? $('login-password') : $('login-username')).focus();
  }

  bindAuthView() {
    for (const sel of [$('reg-q1'), $('reg-q2')]) {
      sel.replaceChildren(...SECURITY_QUESTIONS.map((q) => el('option', {value: q}, q)));
    }
    $('reg-q2').selectedIndex = 1;
    $('tab-login').addEventListener('click', () => this.selectTab('login'));
    $('tab-register').addEventListener('click', () => this.selectTab('register'));
    // Arrow keys move between the tabs, as in every tab list.
    for (const tab of [$('tab-login'), $('tab-register')]) {
      tab.addEventListener('keydown', (e) => {
        if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
        const next = tab.id === 'tab-login' ? 'register' : 'login';
        this.selectTab(next);
        $(`tab-${next}`).focus();
      });
    }
    $('login-form').addEventListener('submit', (e) => this.onLogin(e));
    $('register-form').addEventListener('submit', (e) => this.onRegister(e));
  }

  selectTab(which) {
    for (const name of ['login', 'register']) {
      const on = name === which;
      $(`tab-${name}`).setAttribute('aria-selected', String(on));
      $(`tab-${name}`).tabIndex = on ? 0 : -1;
      $(`${name}-form`).hidden = !on;
    }
  }

  /** whenConnected waits (a while) for the socket, so a login typed during a reconnect works. */
  whenConnected(ms = 10_000) {
    if (this.conn.isOpen) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.conn.removeEventListener('open', done);
        reject(new Error('the server cannot be reached; check your connection and try again'));
      }, ms);
      this.conn.addEventListener('open', done, {once: true});
      this.conn.reconnectNow();
    });
  }

  async authSubmit(form, fn) {
    const error = form.querySelector('.form-error');
    const button = form.querySelector('button[type=submit]');
    error.textContent = '';
    button.disabled = true;
    try {
      await this.whenConnected();
      await fn();
      form.reset();
    } catch (err) {
      error.textContent = err.cmd ? describeError(err) : err.message;
    } finally {
      button.disabled = false;
    }
  }

  onLogin(e) {
    e.preventDefault();
    const form = e.target;
    const username = $('login-username').value.trim();
    const password = $('login-password').value;
    if (!username || !password) {
      form.querySelector('.form-error').textContent = 'Enter your username and password.';
      return;
    }
    this.authSubmit(form, () => this.chat.login(username, password));
  }

  onRegister(e) {
    e.preventDefault();
    const form = e.target;
    const error = form.querySelector('.form-error');
    const username = $('reg-username').value.trim();
    const password = $('reg-password').value;
    const quests = [
      {Question: $('reg-q1').value, Answer: $('reg-a1').value.trim()},
      {Question: $('reg-q2').value, Answer: $('reg-a2').value.trim()},
    ];
    let problem = '';
    if (!/^[A-Za-z0-9_]{3,32}$/.test(username)) problem = 'A username has 3 to 32 letters, digits or underscores.';
    else if (codePoints(password) < 8) problem = 'A password has at least 8 characters.';
    else if (quests[0].Question === quests[1].Question) problem = 'Pick two different security questions.';
    else if (!quests[0].Answer || !quests[1].Answer) problem = 'Answer both security questions.';
    if (problem) {
      error.textContent = problem;
      return;
    }
    this.authSubmit(form, () => this.chat.register(username, password, quests));
  }

  // The chat view

  showChat(username) {
    if (this.shownUser && !sameUser(this.shownUser, username)) {
      this.closeConvo(); // another user logged in on this browser
      this.drafts.clear();
    }
    this.shownUser = username;
    $('auth-view').hidden = true;
    $('chat-view').hidden = false;
    $('me-name').textContent = username;
    $('me-avatar').textContent = initials(username);
    $('me-avatar').style.setProperty('--hue', hue(username));
    this.list.render();
    if (this.chat.openCid && !this.messages.cid) this.openConvo(this.chat.openCid, {focus: false});
    if (this.messages.cid) this.messages.reload();
  }

  bindChatView() {
    $('new-convo-btn').addEventListener('click', () => this.dialogs.openNewConvo());
    $('rename-btn').addEventListener('click', () => this.dialogs.openRename(this.chat.openCid));
    $('members-btn').addEventListener('click', () => this.dialogs.openMembers(this.chat.openCid));
    $('back-btn').addEventListener('click', () => this.showPane('list'));
    $('logout-btn').addEventListener('click', () => this.onLogout());

    const input = $('composer-input');
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('composer').requestSubmit();
      }
    });
    input.addEventListener('input', () => {
      this.autoGrow();
      if (this.chat.openCid && input.value.trim()) this.chat.noteTyping(this.chat.openCid);
    });
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      this.onSend();
    });

    document.addEventListener('visibilitychange', () => {
      this.updateAttention();
      // Write the device copy now: a hidden tab may be closed without another chance.
      if (document.visibilityState === 'hidden' && this.chat.store) this.chat.store.save().catch(() => {});
    });
    window.addEventListener('pagehide', () => {
      if (this.chat.store) this.chat.store.save().catch(() => {});
    });
    phone.addEventListener('change', () => this.updateAttention());
    document.addEventListener('keydown', (e) => {
      // Escape goes back to the list on a phone (dialogs handle their own Escape first).
      if (e.key === 'Escape' && phone.matches && !document.querySelector('dialog[open]') &&
          $('chat-view').dataset.pane === 'chat') {
        this.showPane('list');
      }
    });
  }

  showPane(pane) {
    $('chat-view').dataset.pane = pane;
    if (pane === 'list') {
      const current = this.chat.openCid && $('convo-list').querySelector(`[data-cid="${CSS.escape(this.chat.openCid)}"]`);
      (current || $('convo-filter')).focus();
    }
    this.updateAttention();
  }

  openConvo(cid, {focus}) {
    if (!this.chat.store.convo(cid)) return;
    if (this.messages.cid && this.messages.cid !== cid) this.drafts.set(this.messages.cid, $('composer-input').value);
    this.chat.openConvo(cid);
    this.list.select(cid);
    $('no-convo').hidden = true;
    $('convo').hidden = false;
    // The pane first: on a phone it is hidden until now, and a hidden list cannot be scrolled
    // to its newest message.
    this.showPane('chat');
    this.renderHeader();
    this.messages.show(cid);
    $('composer-input').value = this.drafts.get(cid) || '';
    this.autoGrow();
    if (focus) $('composer-input').focus();
    this.updateAttention();
  }

  closeConvo() {
    this.chat.openConvo(null);
    this.messages.close();
    this.list.select(null);
    $('convo').hidden = true;
    $('no-convo').hidden = false;
    this.showPane('list');
  }

  renderHeader() {
    const c = this.chat.store.convo(this.chat.openCid);
    if (!c) return;
    $('convo-title').textContent = convoTitle(c, this.chat.me);
    const others = c.Members.map((m) => m.username).filter((n) => !sameUser(n, this.chat.me));
    $('convo-sub').textContent = others.length ? `${listNames([...others, 'you'])}` : 'Only you';
  }

  autoGrow() {
    const input = $('composer-input');
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  onSend() {
    const cid = this.chat.openCid;
    const input = $('composer-input');
    const content = input.value;
    if (!cid || !content.trim()) return;
    try {
      this.chat.send(cid, content);
    } catch (err) {
      toast(`Couldn't send your message: ${err.message}.`);
      return;
    }
    input.value = '';
    this.drafts.delete(cid);
    this.autoGrow();
    input.focus();
  }

  /** updateAttention: messages count as read only while the user can see the newest ones. */
  updateAttention() {
    const on = document.visibilityState === 'visible' && !!this.messages.cid && !$('chat-view').hidden &&
      !(phone.matches && $('chat-view').dataset.pane !== 'chat') && this.messages.isNearBottom();
    if (on !== this.attentive || on) {
      this.attentive = on;
      this.chat.setAttentive(on);
    }
  }

  async onLogout() {
    const queued = this.chat.store ? this.chat.store.outbox.count() : 0;
    const question = queued
      ? `${queued} message${queued > 1 ? 's have' : ' has'} not been sent yet and will be lost. Log out anyway?`
      : 'Log out? Messages stored on this device will be removed from it.';
    if (!(await confirmDialog(question, 'Log out'))) return;
    await this.chat.logout();
    location.replace(location.pathname + location.search);
  }
}

async function main() {
  if (typeof SockJS === 'undefined' || typeof loki === 'undefined' || typeof LokiIndexedAdapter === 'undefined') {
    $('boot').textContent = 'pingedchat could not load its scripts. Reload the page to try again.';
    return;
  }
  await acquireTabLock();
  app = new App();
  await app.start();
}

main();
