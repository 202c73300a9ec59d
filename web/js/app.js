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
import {Settings} from './settings.js';
import {Friends} from './friends.js';
import {Scheduler} from './schedule.js';
import {Mail} from './mail.js';
import {Notifier, pushTarget} from './notify.js';
import {Files} from './files.js';
import {MessageActions, ReplyBar, MentionCompleter} from './actions.js';
import {Search} from './search.js';
import {el, hue, initials, listNames, sameUser, codePoints, setText, setData, setAttr, setHidden} from './util.js';

const $ = (id) => document.getElementById(id);
const NAME_CHECK_MS = 350; // after the last key, before asking whether a username is free

const SECURITY_QUESTIONS = [
  'What was the name of your first pet?',
  'In what city were you born?',
  'What is the title of your favourite book?',
  'What was the make of your first car?',
  'What street did you grow up on?',
  'What was the name of your first school?',
];

const phone = window.matchMedia('(max-width: 760px)');

// A message for the next start of the page (after a reload that resets everything).
const NOTICE_KEY = 'pingedchat.notice';

// Toasts and announcements

/** placeToasts keeps the toasts where they can be seen and used. A modal dialog puts the rest
 * of the page under its backdrop and makes it inert, so while one is open the toasts live
 * inside it (they are position: fixed, so they stay in the same place on the screen). The
 * topmost dialog is the last open one in the document: dialogs opened from others come later
 * in index.html. */
function placeToasts() {
  const open = [...document.querySelectorAll('dialog[open]')];
  const host = open.length ? open[open.length - 1] : document.body;
  const box = $('toasts');
  if (box.parentElement !== host) host.append(box);
}

/** toast shows a message for a while; errors stay longer. Text only. */
function toast(text, kind = 'error') {
  const box = el('div', {class: `toast ${kind}`},
    el('p', {}, text),
    el('button', {type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => box.remove()}, '×'));
  placeToasts();
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
    this.replyBar = new ReplyBar({bar: $('reply-bar'), text: $('reply-text'), cancel: $('reply-cancel')});
    this.messages.actions = new MessageActions(this.chat, {toast, onReply: (r) => {
      this.replyBar.set(r);
      $('composer-input').focus();
    }});
    this.mentions = new MentionCompleter(this.chat, $('composer-input'), $('mention-list'));
    this.search = new Search(this.chat, {
      form: $('search-form'), input: $('search-input'), panel: $('search-panel'), list: $('search-results'),
      more: $('search-more'), close: $('search-close'), status: $('search-status'),
    }, (cid, id) => {
      if (!this.chat.store.convo(cid)) return;
      this.openConvo(cid, {focus: false});
      this.messages.jumpTo(id);
    });
    this.dialogs = new Dialogs(this.chat, {onOpenConvo: (cid) => this.openConvo(cid, {focus: true}), toast});
    this.notifier = new Notifier(this.chat, {
      openConvo: (cid) => {
        if (!this.chat.store || !this.chat.store.convo(cid)) return;
        for (const d of document.querySelectorAll('dialog[open]')) d.close();
        this.openConvo(cid, {focus: true});
      },
    });
    this.settings = new Settings(this.chat, {toast, notifier: this.notifier});
    this.files = new Files(this.chat, {toast});
    this.scheduler = new Scheduler(this.chat, {
      toast, announce, draft: () => $('composer-input').value,
      onScheduled: (cid, content) => {
        // What was written is on its way: the composer is free for the next message.
        if (cid === this.chat.openCid && $('composer-input').value === content) {
          $('composer-input').value = '';
          this.drafts.delete(cid);
          this.autoGrow();
        }
        if (cid === this.chat.openCid) $('composer-input').focus();
      },
    });
    this.mail = new Mail(this.chat, {toast, announce, onShow: () => this.showPane('chat'), onBack: () => this.showPane('list')});
    this.friends = new Friends(this.chat, {toast, announce, openConvo: (cid) => this.openConvo(cid, {focus: true})});
    // Dialogs open and close in many places: follow them all.
    const watcher = new MutationObserver(placeToasts);
    for (const d of document.querySelectorAll('dialog')) watcher.observe(d, {attributes: true, attributeFilter: ['open']});

    this.bindChat();
    this.bindAuthView();
    this.bindChatView();
    // A hook for tests and debugging in the console: flush() resolves once the device copy is
    // written to IndexedDB.
    window.pingedchat = {
      app: this, chat: this.chat, conn: this.conn, notifier: this.notifier, mail: this.mail,
      flush: () => (this.chat.store ? this.chat.store.save() : null),
    };
  }

  async start() {
    const notice = sessionStorage.getItem(NOTICE_KEY);
    sessionStorage.removeItem(NOTICE_KEY);
    const user = this.chat.savedUser;
    if (user) {
      // Show the last state from the device at once; the socket catches up behind it.
      try {
        await this.chat.prepare(user);
        this.showChat(user);
        const last = pushTarget() || this.chat.store.getMeta('openCid');
        if (last && this.chat.store.convo(last)) this.openConvo(last, {focus: false});
      } catch (err) {
        toast(`Couldn't open the messages stored on this device: ${err.message}`);
      }
      if (!this.chat.auth.session) this.showAuth('Your session has ended; log in again.');
    } else {
      this.showAuth(notice || '');
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
      this.renderRemoved();
      this.messages.renderReceipts();
    });
    chat.addEventListener('message', (e) => this.messages.onMessage(e.detail.record, e.detail.changed));
    chat.addEventListener('reset', (e) => {
      if (e.detail.cid === this.messages.cid) this.messages.reload();
    });
    chat.addEventListener('typing', (e) => {
      if (e.detail.cid === this.messages.cid) this.messages.renderTyping();
    });
    chat.addEventListener('removed', (e) => {
      const {cid, name, kept} = e.detail;
      if (cid === this.messages.cid && !kept) this.closeConvo();
      toast(`You are no longer a member of “${name || 'a conversation'}”.`, 'info');
    });
    chat.addEventListener('incoming', (e) => {
      const {cid, record} = e.detail;
      const c = chat.store.convo(cid);
      const where = cid === chat.openCid ? '' : ` in ${c ? convoTitle(c, chat.me) : 'a conversation'}`;
      announce(`${record.f_username}${where}: ${record.content.slice(0, 300)}`);
    });
    chat.addEventListener('problem', (e) => toast(e.detail.text));
    chat.addEventListener('deleted', () => {
      // Nothing of the account is left on this device: start over at the login form.
      sessionStorage.setItem(NOTICE_KEY, 'Your account was deleted.');
      location.replace(location.pathname + location.search);
    });
  }

  // Status

  showStatus({state, transport, queued}) {
    setData(document.body, 'conn', state);
    setData(document.body, 'transport', transport || '');
    const words = {
      offline: 'Offline', waiting: 'Reconnecting…', connecting: 'Connecting…', connected: 'Connected',
      authenticating: 'Logging in…', syncing: 'Syncing…', online: 'Online',
      busy: 'Server busy, trying again…',
    };
    let text = words[state] || state;
    if (queued && state !== 'online') text += ` · ${queued} waiting to send`;
    setText($('conn-text'), text);
    setData($('conn-status'), 'state', state);
    setAttr($('conn-status'), 'title', transport ? `Connected over ${transport}` : '');
    setText($('auth-conn'), state === 'connected' || state === 'online' ? '' : `Server: ${text}`);
    // In the conversation too (on a phone the sidebar's status is out of sight): why messages wait.
    // Shown from the first failure until logged in again, not while a healthy start connects.
    if (state === 'offline' || state === 'waiting' || state === 'busy') this.away = true;
    if (state === 'authenticating' || state === 'syncing' || state === 'online') this.away = false;
    const away = !!this.away;
    setHidden($('chat-conn'), !away);
    setText($('chat-conn'), away
      ? `${{offline: 'You are offline.', busy: 'The server is busy; trying again in a moment.'}[state] || 'Reconnecting…'} New messages will be sent when the connection is back.`
      : '');
    this.messages.refreshStates();
  }

  // Logging in and registering

  showAuth(message) {
    $('auth-view').hidden = false;
    $('chat-view').hidden = true;
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
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
    $('reg-username').addEventListener('input', () => this.checkNameSoon());
    $('forgot-btn').addEventListener('click', () => this.showReset());
    $('reset-back').addEventListener('click', () => {
      this.selectTab('login');
      $('login-username').focus();
    });
    $('reset-form').addEventListener('submit', (e) => this.onReset(e));
  }

  selectTab(which) {
    for (const name of ['login', 'register']) {
      const on = name === which;
      $(`tab-${name}`).setAttribute('aria-selected', String(on));
      $(`tab-${name}`).tabIndex = on ? 0 : -1;
      $(`${name}-form`).hidden = !on;
    }
    $('reset-form').hidden = true;
    $('auth-view').querySelector('.tabs').hidden = false;
  }

  // Forgot password: the username, then its security questions and a new password.

  showReset() {
    const form = $('reset-form');
    form.reset();
    form.querySelector('.form-error').textContent = '';
    this.resetUser = null;
    $('reset-answers').hidden = true;
    $('reset-submit').textContent = 'Continue';
    $('reset-username').readOnly = false;
    $('reset-username').value = $('login-username').value.trim();
    $('login-form').hidden = true;
    $('register-form').hidden = true;
    $('auth-view').querySelector('.tabs').hidden = true;
    form.hidden = false;
    $('reset-username').focus();
  }

  onReset(e) {
    e.preventDefault();
    const form = e.target;
    const error = form.querySelector('.form-error');
    if (!this.resetUser) {
      const username = $('reset-username').value.trim();
      if (!username) {
        error.textContent = 'Type your username.';
        return;
      }
      this.resetSubmit(form, async () => {
        const {username: name, questions} = await this.chat.resetQuestions(username);
        if (questions.length !== 2) throw new Error('this account has no security questions, so its password cannot be reset');
        this.resetUser = name;
        $('reset-username').value = name;
        $('reset-username').readOnly = true;
        $('reset-q1').textContent = questions[0];
        $('reset-q2').textContent = questions[1];
        $('reset-answers').hidden = false;
        $('reset-submit').textContent = 'Set new password';
        $('reset-a1').focus();
      });
      return;
    }
    const answers = [$('reset-a1').value.trim(), $('reset-a2').value.trim()];
    const password = $('reset-password').value;
    if (!answers[0] || !answers[1]) {
      error.textContent = 'Answer both questions.';
      return;
    }
    if (codePoints(password) < 8) {
      error.textContent = 'A password has at least 8 characters.';
      $('reset-password').focus();
      return;
    }
    const username = this.resetUser;
    this.resetSubmit(form, async () => {
      if (!(await this.chat.resetPassword(username, password, answers))) {
        throw new Error('Those answers are not right. Check them and try again.');
      }
      // The new password works at once: log in with it.
      await this.chat.login(username, password);
      form.reset();
    });
  }

  async resetSubmit(form, fn) {
    const error = form.querySelector('.form-error');
    const buttons = form.querySelectorAll('button');
    error.textContent = '';
    buttons.forEach((b) => (b.disabled = true));
    try {
      await this.whenConnected();
      await fn();
    } catch (err) {
      error.textContent = err.cmd ? describeError(err) : err.message;
    } finally {
      buttons.forEach((b) => (b.disabled = false));
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

  /** checkNameSoon asks the server, a moment after typing stops, whether the name is free, and
   * says so under the field (the form still checks everything on submit). */
  checkNameSoon() {
    clearTimeout(this.nameTimer);
    const hint = $('reg-username-hint');
    const input = $('reg-username');
    const name = input.value.trim();
    const reset = () => {
      hint.textContent = '3 to 32 letters, digits or underscores.';
      hint.classList.remove('taken');
      input.removeAttribute('aria-invalid');
    };
    reset();
    if (!/^[A-Za-z0-9_]{3,32}$/.test(name) || !this.conn.isOpen) return;
    this.nameTimer = setTimeout(async () => {
      let rep;
      try {
        rep = await this.conn.request('CheckUsername', {username: name});
      } catch {
        return; // the submit answers anyway
      }
      if (input.value.trim() !== name) return; // typed on meanwhile
      if (rep.Available === false) {
        hint.textContent = `“${name}” is taken; try another.`;
        hint.classList.add('taken');
        input.setAttribute('aria-invalid', 'true');
      }
    }, NAME_CHECK_MS);
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
    // The questions are optional, but one alone cannot reset a password: both or neither.
    const answered = quests.filter((q) => q.Answer).length;
    let problem = '';
    if (!/^[A-Za-z0-9_]{3,32}$/.test(username)) problem = 'A username has 3 to 32 letters, digits or underscores.';
    else if (codePoints(password) < 8) problem = 'A password has at least 8 characters.';
    else if (answered === 1) problem = 'Answer both security questions, or leave both empty.';
    else if (answered === 2 && quests[0].Question === quests[1].Question) problem = 'Pick two different security questions.';
    if (problem) {
      error.textContent = problem;
      return;
    }
    this.authSubmit(form, () => this.chat.register(username, password, answered ? quests : []));
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
    $('settings-btn').addEventListener('click', () => this.settings.open());
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
    $('forget-convo').addEventListener('click', () => {
      const cid = this.chat.openCid;
      if (!cid) return;
      this.closeConvo();
      this.chat.leave(cid).catch((err) => toast(err.message));
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
        if (this.mail.visible && $('mail-pane').dataset.mailpane === 'read') this.mail.closeMessage({focus: true});
        else this.showPane('list');
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
    this.mail.hide();
    if (this.messages.cid !== cid) this.replyBar.clear();
    this.chat.openConvo(cid);
    this.list.select(cid);
    $('no-convo').hidden = true;
    $('convo').hidden = false;
    // The pane first: on a phone it is hidden until now, and a hidden list cannot be scrolled
    // to its newest message.
    this.showPane('chat');
    this.renderHeader();
    this.renderRemoved();
    this.messages.show(cid);
    this.scheduler.show(cid);
    $('composer-input').value = this.drafts.get(cid) || '';
    this.autoGrow();
    if (focus) $('composer-input').focus();
    this.updateAttention();
  }

  /** renderRemoved swaps the composer for a notice in a conversation we were removed from. */
  renderRemoved() {
    const c = this.chat.openCid && this.chat.store.convo(this.chat.openCid);
    const gone = !!(c && c.Removed);
    $('composer').hidden = gone;
    $('removed-bar').hidden = !gone;
    $('rename-btn').hidden = gone;
    $('members-btn').hidden = gone;
  }

  closeConvo() {
    this.chat.openConvo(null);
    this.messages.close();
    this.scheduler.show(null);
    this.list.select(null);
    $('convo').hidden = true;
    $('no-convo').hidden = false;
    this.showPane('list');
  }

  renderHeader() {
    const c = this.chat.store.convo(this.chat.openCid);
    if (!c) return;
    setText($('convo-title'), convoTitle(c, this.chat.me));
    const others = c.Members.map((m) => m.username).filter((n) => !sameUser(n, this.chat.me));
    setText($('convo-sub'), others.length ? `${listNames([...others, 'you'])}` : 'Only you');
  }

  autoGrow() {
    const input = $('composer-input');
    if (!input.value) {
      // Empty (just sent): back to one line without measuring, which would force a layout.
      input.style.height = '';
      return;
    }
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }

  onSend() {
    const cid = this.chat.openCid;
    const input = $('composer-input');
    const content = input.value;
    if (!cid || !content.trim()) return;
    try {
      this.chat.send(cid, content, this.replyBar.record && this.replyBar.record.CID === cid ? this.replyBar.record : null);
      this.replyBar.clear();
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
    const on = document.visibilityState === 'visible' && !!this.messages.cid && !$('chat-view').hidden && !this.mail.visible &&
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
    await this.notifier.disablePush(); // before the session ends: RemoveWebDev
    await this.chat.logout();
    location.replace(location.pathname + location.search);
  }
}

/** registerServiceWorker installs sw.js, which keeps the app shell for loads without a network
 * (and makes loads fast). Only in a secure context (HTTPS, or localhost), as browsers require. */
function registerServiceWorker() {
  if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
  const register = () => navigator.serviceWorker.register('sw.js').catch((err) => {
    console.warn('pingedchat: no offline copy of the app:', err.message);
  });
  // After the page has loaded: the worker's first caching must not compete with the start.
  if (document.readyState === 'complete') register();
  else window.addEventListener('load', register, {once: true});
}

async function main() {
  registerServiceWorker();
  if (typeof SockJS === 'undefined' || typeof loki === 'undefined' || typeof LokiIndexedAdapter === 'undefined' ||
      typeof IncrementalIndexedDBAdapter === 'undefined') {
    $('boot').textContent = 'pingedchat could not load its scripts. Reload the page to try again.';
    return;
  }
  await acquireTabLock();
  app = new App();
  await app.start();
}

main();
