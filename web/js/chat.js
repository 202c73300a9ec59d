// The chat model: logs in over a Connection, keeps the LocalStore in step with the server
// (incremental sync on every login, live pushes in between), and sends the outbox. The view
// (app.js) listens to its events and calls its methods; nothing here touches the DOM.
//
// Events (CustomEvent detail in brackets):
//   status   {state, transport, queued}   offline | connecting | authenticating | syncing | online
//   loggedin {username}                   a login or resume succeeded
//   session  {}                           this session got a new token (a password change)
//   authrequired {message}                no valid session: show the login form
//   convos   {}                           the conversation list changed
//   convo    {cid}                        a conversation's name, members or read times changed
//   message  {cid, record, added}         a message was added or changed (sent, failed…)
//   reset    {cid}                        many messages changed: re-render the conversation
//   typing   {cid}                        who is typing changed
//   removed  {cid, name}                  we left or were removed from a conversation
//   incoming {cid, record}                a new message from someone else (for announcements)
//   problem  {text}                       an error to show the user
//   user     {view}                       the user view changed (settings, verification, blocks)
//   scheduled {}                          the list of our scheduled messages changed
//   deleted  {}                           the account was deleted; nothing of it is left here

import {ConnectionError, ServerError} from './conn.js';
import {LocalStore} from './store.js';
import {parseFileMessage} from './files.js';
import {randomId, sameUser, wireTime, codePoints} from './util.js';

export const MAX_CONTENT = 8000; // DESIGN §7
const PAGE = 50; // messages per GetConvoData / GetMoreConvoMessages page
const TYPING_EVERY_MS = 3000; // at most one typing notification per 3 s (the server's rate limit)
const TYPING_IDLE_MS = 5000; // stopped typing after this long without a key
const TYPING_SHOWN_MS = 7000; // how long another user's typing shows without a refresh
// Clients told to resync together spread their requests over this long.
const RESYNC_JITTER_MS = 2_000;
// A refused resume ("the server is busy" after a restart) tries again on the same connection
// after 2.5–7.5 s: the jitter keeps the retries of the clients refused together from coming
// back together.
const LOGIN_RETRY_MS = 5_000;
const SYNC_BATCH = 20; // conversations per SyncConvos (the server's limit)
// A scheduled message added or removed here is trusted over a user view for this long: a view
// made just before the change may arrive just after it.
const SCHEDULE_EDIT_MS = 15_000;
const SCHEDULED_PREFIX = 'scheduled-'; // the client_id of a delivered scheduled message
const AUTH_KEY = 'pingedchat.auth';
const DEVICE_KEY = 'pingedchat.device';

const VERBS = {
  CreateUser: 'create your account',
  ValidateUser: 'log in',
  CreateConversation: 'create the conversation',
  AddUsersToConversation: 'add people',
  RemoveUserFromConversation: 'remove that member',
  ChangeConvoName: 'rename the conversation',
  SendMessage: 'send your message',
  GetConvoData: 'load the conversation',
  SyncConvos: 'bring your conversations up to date',
  GetMoreConvoMessages: 'load older messages',
  UpdateUserStatus: 'update your read and typing status',
  UpdateUnreadCount: 'update the unread count',
  UpdateConvoMtime: 'record the sync time',
  Logout: 'log out',
  GetPasswordResetUser: 'look up your security questions',
  ResetUserPassword: 'reset your password',
  ChangeUserPassword: 'change your password',
  ChangeUserEmail: 'change your e-mail address',
  ChangeUserPhone: 'change your phone number',
  SendVerificationCode: 'send a code',
  VerifyContact: 'verify the code',
  ChangeProfilePic: 'change your profile picture',
  SaveAutoreplyMessage: 'save your automatic reply',
  BlockUser: 'block that user',
  UnblockUser: 'unblock that user',
  DeleteUser: 'delete your account',
  GetUserView: 'load your account',
  AddFriend: 'send the friend request',
  AcceptFriendRequest: 'accept the friend request',
  DenyFriendRequest: 'decline the friend request',
  RemoveFriend: 'remove that friend',
  GetUserByUsername: 'look that person up',
  GetUserByEmail: 'look that address up',
  MatchUsers: 'look up your contacts',
  AddScheduledMessage: 'schedule the message',
  RemoveScheduledMessage: 'cancel the scheduled message',
  GetAllEmails: 'load your mail',
  MarkEmailUnread: 'mark the e-mail',
  MarkEmailStarred: 'star the e-mail',
  MarkEmailDeleted: 'move the e-mail',
  RemoveDeletedEmails: 'empty the Trash',
  AddNewDraft: 'save the draft',
  SendEmailMessage: 'send the e-mail',
  SendEmailInvite: 'send the invitation',
  EditMessage: 'edit the message',
  DeleteMessage: 'delete the message',
  RemoveConvoFile: 'remove the file',
  React: 'react to the message',
  SearchMessages: 'search',
};

/** describeError puts an error into words for the user. */
export function describeError(err, cmd = err && err.cmd) {
  const verb = VERBS[cmd] || (cmd ? `do that (${cmd})` : 'do that');
  if (err instanceof ServerError) return `Couldn't ${verb}: ${err.message}`;
  if (err instanceof ConnectionError) return `Couldn't ${verb}: you are offline (${err.message}).`;
  return `Couldn't ${verb}: ${err && err.message ? err.message : String(err)}`;
}

/** transient errors are worth retrying later; anything else the server says is final. */
function isTransient(err) {
  return err instanceof ConnectionError || /rate limited|try again|timed out/i.test(err.message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Chat extends EventTarget {
  constructor(conn) {
    super();
    this.conn = conn;
    this.store = null;
    this.me = '';
    this.loggedIn = false;
    this.state = 'offline';
    this.openCid = null; // the conversation on screen
    this.attentive = false; // the page is visible and the open conversation scrolled to its end
    this.needsSync = new Set(); // conversations not yet synced since this login
    this.syncing = false; // a syncAll is running
    this.syncAgain = false; // conversations were added to needsSync while it ran
    this.metaStale = new Set(); // up to date but not fetched since this login: members, read times
    this.typing = new Map(); // cid → Map(username → expiry ms)
    this.typingSent = new Map(); // cid → {at, timer}
    this.readSent = new Map(); // cid → NewReadTime last sent
    this.flushing = false;
    this.work = Promise.resolve(); // pushes and login handling run one after another, in order
    this.view = null; // the user view (DESIGN §3.3) as last received, without its session token
    this.deleted = false; // the account was deleted: a revocation that follows says nothing new
    this.scheduled = []; // our scheduled messages [{ID, CID, Time, Content}], soonest first
    this.leaving = new Set(); // CIDs we are leaving ourselves (not removed by someone)
    this.scheduleEdits = new Map(); // ID → {item, removed, at}: changes made here, recently
    this.auth = readJSON(AUTH_KEY);
    this.deviceId = localStorage.getItem(DEVICE_KEY) || randomId();
    localStorage.setItem(DEVICE_KEY, this.deviceId);

    conn.addEventListener('open', () => this.onOpen());
    conn.addEventListener('close', (e) => this.onClose(e.detail));
    conn.addEventListener('state', (e) => this.setState(e.detail.state));
    conn.addEventListener('push', (e) => this.serially(() => this.onPush(e.detail)));
  }

  /** savedUser is the user whose session this browser holds, if any. */
  get savedUser() {
    return this.auth && this.auth.username ? this.auth.username : '';
  }

  serially(fn) {
    this.work = this.work.then(fn).catch((err) => {
      console.error('pingedchat:', err);
      this.problem(`Something went wrong: ${err.message}`);
    });
    return this.work;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  problem(text) {
    this.emit('problem', {text});
  }

  setState(state) {
    this.state = state;
    this.emit('status', {
      state, transport: this.conn.transport, queued: this.store ? this.store.outbox.count() : 0,
    });
  }

  /** prepare opens the local database of a user (before connecting, to show the last state). */
  async prepare(username) {
    if (this.store && sameUser(this.store.username, username)) return this.store;
    if (this.store) await this.store.close();
    this.store = null;
    const store = new LocalStore(username);
    await store.open();
    this.store = store;
    this.me = username;
    this.scheduleEdits.clear();
    this.setScheduled(store.getMeta('scheduled', []) || []);
    this.emit('convos');
    return store;
  }

  // Logging in

  onOpen() {
    if (this.auth && this.auth.session) {
      this.setState('authenticating');
      this.resume();
    } else {
      this.setState('connected');
    }
  }

  onClose({code, reason}) {
    const wasLoggedIn = this.loggedIn;
    this.loggedIn = false;
    this.needsSync.clear();
    this.metaStale.clear();
    for (const t of this.typing.values()) t.clear();
    if (this.openCid) this.emit('typing', {cid: this.openCid});
    // 4010: the server revoked this session (logout elsewhere, password change).
    if (code === 4010 && this.deleted) {
      // The DeleteUser push came first and said it all.
    } else if (code === 4010) {
      this.forgetSession();
      this.emit('authrequired', {message: `You were logged out: ${reason || 'session revoked'}.`});
    } else if (wasLoggedIn && code !== 1000) {
      console.info('pingedchat: connection closed', code, reason);
    }
  }

  async resume() {
    const {username, session} = this.auth;
    try {
      const view = await this.conn.request('ValidateUser', {username, session, token: this.deviceId});
      await this.serially(() => this.onLoggedIn(view));
    } catch (err) {
      if (err instanceof ServerError && !isTransient(err)) {
        this.forgetSession();
        this.emit('authrequired', {message: err.message});
        this.setState('connected');
      } else if (err instanceof ServerError) {
        // Rate limited or a server hiccup: try again on this connection in a while. "Busy" is
        // the server admitting logins a few at a time after a restart: a state, not an error.
        if (/busy/i.test(err.message)) this.setState('busy');
        else this.problem(describeError(err, 'ValidateUser'));
        setTimeout(() => {
          if (this.conn.isOpen && !this.loggedIn && this.auth && this.auth.session) this.resume();
        }, LOGIN_RETRY_MS / 2 + Math.random() * LOGIN_RETRY_MS);
      }
      // A lost connection retries by itself; the next 'open' resumes again.
    }
  }

  /** login with a password; resolves when logged in, rejects with the server's reason. */
  async login(username, password) {
    const view = await this.conn.request('ValidateUser', {username, password, token: this.deviceId});
    await this.serially(() => this.onLoggedIn(view));
  }

  /** register a new user with none or two security questions ([{Question, Answer}, …]). */
  async register(username, password, secQuests) {
    const view = await this.conn.request('CreateUser', {username, password, secQuests, token: this.deviceId});
    await this.serially(() => this.onLoggedIn(view));
  }

  async logout() {
    if (this.loggedIn) {
      try {
        await this.conn.request('Logout');
      } catch (err) {
        console.warn('pingedchat: logout', err);
      }
    }
    // A logout leaves nothing of the user on this device.
    await this.forgetLocal();
  }

  /** resetQuestions asks (before login) for a user's two security questions. */
  async resetQuestions(username) {
    const rep = await this.request('GetPasswordResetUser', {username});
    return {username: rep.Username || username, questions: Array.isArray(rep.Questions) ? rep.Questions : []};
  }

  /** resetPassword sets a new password with the answers to the security questions (in their
   * order); resolves true when the answers were right. Every session of the user ends. */
  async resetPassword(username, password, answers) {
    const rep = await this.request('ResetUserPassword', {
      username, password, secQuests: answers.map((Answer) => ({Answer})),
    });
    return rep.success === 'true';
  }

  /** forgetLocal removes everything of the user from this device: the session, the device
   * copy and its unsent messages. */
  async forgetLocal() {
    this.conn.stop();
    this.forgetSession();
    localStorage.removeItem(AUTH_KEY);
    this.auth = null;
    if (this.store) await this.store.destroy();
    this.store = null;
    this.scheduled = [];
  }

  forgetSession() {
    if (this.auth) {
      this.auth = {username: this.auth.username, session: ''};
      localStorage.setItem(AUTH_KEY, JSON.stringify(this.auth));
    }
  }

  /** onLoggedIn handles the user view of a login: store, sync, then send the outbox. */
  async onLoggedIn(view) {
    const username = view.Username;
    this.auth = {username, session: view.session || (this.auth && this.auth.session) || ''};
    localStorage.setItem(AUTH_KEY, JSON.stringify(this.auth));
    await this.prepare(username);
    this.setView(view);
    this.me = username;
    this.loggedIn = true;
    this.conn.resetBackoff();
    const serverMtimes = this.applySummaries(view.CIDs || []);
    // A conversation needs a sync unless nothing can be missing: no message newer than its sync
    // point. The sync point moves only with the server's history pages, never with pushes, so a
    // push missed for any reason is fetched by the next sync. The others' members and read
    // times are refreshed when they are opened.
    this.metaStale.clear();
    for (const c of this.store.convos.find()) {
      if (!c.syncedTo || (serverMtimes.get(c.CID) || '') > c.syncedTo) this.needsSync.add(c.CID);
      else this.metaStale.add(c.CID);
    }
    this.emit('loggedin', {username});
    this.setState('syncing');
    this.syncAll(); // not awaited: pushes keep being handled meanwhile
    this.flushOutbox();
  }

  /** applySummaries merges the user view's conversation list: names, M_times, unread counts;
   * conversations no longer listed were left (or we were removed) while away. */
  applySummaries(cids) {
    const listed = new Map(); // CID → M_time
    for (const s of cids) {
      if (!s || typeof s.CID !== 'string') continue;
      listed.set(s.CID, s.M_time || '');
      const c = this.store.convo(s.CID);
      const fields = {Name: s.Name || '', UnreadCount: s.UnreadCount || 0};
      if (!c || (s.M_time || '') > c.M_time) fields.M_time = s.M_time || '';
      this.store.upsertConvo(s.CID, fields);
    }
    for (const c of this.store.convos.find()) {
      // One we were removed from stays (read-only) until the user clears it.
      if (!listed.has(c.CID) && !c.Removed) this.store.removeConvo(c.CID);
    }
    this.emit('convos');
    return listed;
  }

  // Sync

  /** resync answers the server's Resync push (it may have lost events for us, e.g. while its
   * NATS connection was down): read the conversation list again and sync every conversation
   * from its sync point. A short random wait spreads the load of many clients told at once. */
  async resync() {
    await new Promise((r) => setTimeout(r, Math.random() * RESYNC_JITTER_MS));
    if (!this.loggedIn) return;
    let view;
    try {
      view = await this.conn.request('GetUserView');
    } catch (err) {
      if (!(err instanceof ConnectionError)) this.problem(describeError(err, 'GetUserView'));
      return; // a lost connection resyncs on its next login anyway
    }
    await this.serially(() => {
      if (typeof view.Username === 'string') this.setView(view); // friends, scheduled messages
      this.applySummaries(view.CIDs || []);
      for (const c of this.store.convos.find()) this.needsSync.add(c.CID);
    });
    this.syncAll();
  }

  async syncAll() {
    if (this.syncing) {
      this.syncAgain = true; // what was added meanwhile is synced when this round ends
      return;
    }
    this.syncing = true;
    try {
      do {
        this.syncAgain = false;
        await this.syncRound();
      } while (this.syncAgain && this.loggedIn);
    } finally {
      this.syncing = false;
    }
    if (this.loggedIn) this.setState('online');
  }

  /** syncRound brings every conversation in needsSync up to date: SYNC_BATCH at a time with
   * SyncConvos (one request and one database round trip for all of them, which matters when
   * every client comes back at once after a restart). The server answers them in the order
   * asked until its reply budget runs out; those left, and any whose page says More, are asked
   * again from their new sync point. */
  async syncRound() {
    // The conversation on screen first, then the most recently active ones.
    if (this.openCid && this.metaStale.delete(this.openCid)) this.needsSync.add(this.openCid);
    while (this.loggedIn && this.needsSync.size) {
      for (const cid of this.needsSync) {
        const c = this.store.convo(cid);
        if (!c || c.Removed) this.needsSync.delete(cid); // left, or read-only until cleared
      }
      const order = this.store.convoList().map((c) => c.CID).filter((cid) => this.needsSync.has(cid));
      if (!order.length) return;
      if (this.openCid) order.sort((a, b) => (b === this.openCid) - (a === this.openCid));
      const asked = order.slice(0, SYNC_BATCH).map((cid) => {
        const since = this.store.convo(cid).syncedTo || '';
        return since ? {CID: cid, M_time: since} : {CID: cid};
      });
      let rep;
      try {
        rep = await this.conn.request('SyncConvos', {Convos: asked});
      } catch (err) {
        if (!(err instanceof ConnectionError)) this.problem(describeError(err, 'SyncConvos'));
        return; // a lost connection syncs again on its next login
      }
      const answered = Array.isArray(rep.Convos) ? rep.Convos : [];
      if (!answered.length) return; // the server always answers one; do not spin if not
      await this.serially(() => {
        for (const data of answered) this.applySynced(data, asked);
      });
    }
  }

  /** applySynced takes one conversation of a SyncConvos reply. */
  applySynced(data, asked) {
    const ask = data && asked.find((a) => a.CID === data.CID);
    if (!ask) return;
    const cid = ask.CID;
    this.needsSync.delete(cid);
    const c = this.store.convo(cid);
    if (!c || c.Removed) return;
    if (data.error) {
      if (/not a member/.test(data.error)) this.dropConvo(cid, c.Name);
      else this.problem(describeError(new ServerError('SyncConvos', data.error), 'SyncConvos'));
      return;
    }
    this.applyConvoData(cid, data, ask.M_time || '');
    const msgs = Array.isArray(data.Messages) ? data.Messages : [];
    if (data.More && msgs.length) this.needsSync.add(cid); // the next page, from the new sync point
  }

  /** syncConvo fetches what is new in one conversation since its sync point (or, the first
   * time, its latest page), with its current name and members. */
  async syncConvo(cid) {
    const c = this.store.convo(cid);
    if (!c || c.Removed) return;
    // The sync point is the newest m_time of a history page, and a page is complete up to its
    // newest message (the server commits a conversation's messages in m_time order), so asking
    // from exactly there misses nothing.
    let since = c.syncedTo || '';
    // The server answers in pages; a page that says More is followed from its last m_time.
    for (;;) {
      let data;
      try {
        data = await this.conn.request('GetConvoData', since ? {CID: cid, M_time: since} : {CID: cid});
      } catch (err) {
        if (err instanceof ServerError && /not a member/.test(err.message)) {
          this.dropConvo(cid, c.Name);
        } else if (!(err instanceof ConnectionError)) {
          this.problem(describeError(err, 'GetConvoData'));
        }
        return;
      }
      await this.serially(() => this.applyConvoData(cid, data, since));
      const msgs = Array.isArray(data.Messages) ? data.Messages : [];
      if (!data.More || !msgs.length || !this.loggedIn) return;
      since = msgs[msgs.length - 1].m_time;
    }
  }

  applyConvoData(cid, data, since) {
    if (!this.store.convo(cid)) return; // left meanwhile
    this.applyConvoMeta(cid, data);
    const msgs = Array.isArray(data.Messages) ? data.Messages : [];
    let newest = '';
    for (const m of msgs) {
      this.store.putServerMessage(cid, m, this.me);
      this.noteDelivered(m);
      if (m.m_time > newest) newest = m.m_time;
    }
    const c = this.store.convo(cid);
    const fields = {syncedTo: newest > c.syncedTo ? newest : c.syncedTo};
    if (!since) fields.historyComplete = msgs.length < PAGE;
    this.store.upsertConvo(cid, fields);
    this.needsSync.delete(cid);
    if (cid !== this.openCid) this.store.prune(cid);
    if (msgs.length) {
      this.emit('reset', {cid});
      this.emit('convos');
      this.request('UpdateConvoMtime', {CID: cid, M_time: fields.syncedTo}, {background: true});
    }
    if (cid === this.openCid && this.attentive) this.markRead(cid);
  }

  /** applyConvoMeta takes a conversation's name, M_time and members from a push or reply. */
  applyConvoMeta(cid, p) {
    const c = this.store.convo(cid);
    const fields = {};
    if (typeof p.Name === 'string') fields.Name = p.Name;
    if (typeof p.M_time === 'string' && (!c || p.M_time > c.M_time)) fields.M_time = p.M_time;
    if (Array.isArray(p.Members)) {
      fields.Members = p.Members.filter((m) => m && typeof m.username === 'string')
        .map((m) => ({username: m.username, read_time: m.read_time || ''}));
    }
    this.store.upsertConvo(cid, fields);
    this.emit('convo', {cid});
    this.emit('convos');
  }

  dropConvo(cid, name) {
    this.store.removeConvo(cid);
    this.needsSync.delete(cid);
    this.typing.delete(cid);
    this.emit('removed', {cid, name});
    this.emit('convos');
  }

  // Pushes

  onPush(p) {
    if (!this.store || !p || typeof p.cmd !== 'string') return;
    if (typeof p.error === 'string') {
      this.problem(describeError(new ServerError(p.cmd, p.error)));
      return;
    }
    switch (p.cmd) {
      case 'SendMessage':
        this.onMessagePush(p);
        break;
      case 'CreateConversation':
      case 'AddUsersToConversation':
      case 'ChangeConvoName':
        this.onConvoPush(p);
        break;
      case 'RemoveUserFromConversation':
        this.onRemovePush(p);
        break;
      case 'UpdateUserStatus':
        this.onStatusPush(p);
        break;
      case 'UpdateUser':
        // Another of our sessions changed a setting (or a friend request changed our lists).
        if (Array.isArray(p.CIDs)) this.applySummaries(p.CIDs);
        if (typeof p.Username === 'string') this.setView(p);
        break;
      case 'Resync':
        this.resync();
        break;
      case 'DeleteUser':
        return this.onDeleted();
      default:
        break; // mail is mail.js's (it listens to the connection itself)
    }
  }

  onMessagePush(p) {
    const cid = p.CID;
    if (typeof cid !== 'string') return;
    let c = this.store.convo(cid);
    if (!c) {
      // A conversation we did not know of (added while the push was on its way): fetch it.
      c = this.store.upsertConvo(cid, {});
      this.needsSync.add(cid);
      this.syncConvo(cid);
    }
    const {record, added, confirmed, changed} = this.store.putServerMessage(cid, p, this.me);
    if (!record) return; // a change to a message not on this device
    this.noteDelivered(p);
    const fromOther = !sameUser(p.f_username, this.me);
    if (fromOther) this.setTyping(cid, p.f_username, false);
    if (added && fromOther && p.kind !== 'event') {
      if (cid === this.openCid && this.attentive) this.markRead(cid);
      else this.store.upsertConvo(cid, {UnreadCount: (c.UnreadCount || 0) + 1});
      this.emit('incoming', {cid, record});
    }
    if (added || confirmed || changed) {
      this.emit('message', {cid, record, added, changed: !!changed});
      this.emit('convos');
      this.setState(this.state); // the queued count may have changed
    }
  }

  onConvoPush(p) {
    const cid = p.CID;
    if (typeof cid !== 'string') return;
    const known = !!this.store.convo(cid);
    this.applyConvoMeta(cid, p);
    if (!known) {
      this.needsSync.add(cid);
      this.syncConvo(cid);
    }
  }

  onRemovePush(p) {
    const cid = p.CID;
    if (typeof cid !== 'string' || !this.store.convo(cid)) return;
    const removed = Array.isArray(p.Removed) ? p.Removed : [];
    if (removed.some((n) => sameUser(n, this.me))) {
      const name = this.store.convo(cid).Name;
      if (this.leaving.has(cid)) {
        this.dropConvo(cid, name);
        return;
      }
      // Removed by someone else: the timeline says so; keep it readable until cleared.
      this.store.upsertConvo(cid, {Removed: true});
      this.needsSync.delete(cid);
      this.emit('removed', {cid, name, kept: true});
      this.emit('convo', {cid});
      this.emit('convos');
      return;
    }
    this.applyConvoMeta(cid, p);
  }

  onStatusPush(p) {
    const cid = p.CID;
    const c = typeof cid === 'string' ? this.store.convo(cid) : null;
    if (!c || typeof p.Username !== 'string') return;
    if (p.NewReadTime) {
      const members = c.Members.map((m) => (sameUser(m.username, p.Username) && p.NewReadTime > (m.read_time || '')
        ? {...m, read_time: p.NewReadTime} : m));
      const fields = {Members: members};
      if (sameUser(p.Username, this.me)) fields.UnreadCount = this.unreadAfter(cid, p.NewReadTime, c.UnreadCount);
      this.store.upsertConvo(cid, fields);
      this.emit('convo', {cid});
      this.emit('convos');
    }
    // A read-time push always carries Typing (false): it says nothing about typing, so only a
    // typing-only push may clear the indicator.
    if (!sameUser(p.Username, this.me) && (p.Typing || !p.NewReadTime)) {
      this.setTyping(cid, p.Username, !!p.Typing);
    }
  }

  /** unreadAfter counts the stored messages from others after a read time (another device of
   * ours read up to there); without local messages it keeps the count it had. The count walks
   * back from the newest message to the read time only. */
  unreadAfter(cid, readTime, fallback) {
    const n = this.store.countAfter(cid, readTime, (m) => m.kind !== 'event' && !sameUser(m.f_username, this.me));
    return n < 0 ? fallback : n;
  }

  setTyping(cid, user, on) {
    let t = this.typing.get(cid);
    if (!t) this.typing.set(cid, (t = new Map()));
    const had = t.has(user);
    if (on) t.set(user, Date.now() + TYPING_SHOWN_MS);
    else t.delete(user);
    if (had !== on) this.emit('typing', {cid});
    if (on) setTimeout(() => this.expireTyping(cid), TYPING_SHOWN_MS + 50);
  }

  expireTyping(cid) {
    const t = this.typing.get(cid);
    if (!t) return;
    const now = Date.now();
    let changed = false;
    for (const [user, until] of t) {
      if (until <= now) {
        t.delete(user);
        changed = true;
      }
    }
    if (changed) this.emit('typing', {cid});
  }

  /** typingUsers: who is typing in a conversation now (not us). */
  typingUsers(cid) {
    const t = this.typing.get(cid);
    if (!t) return [];
    const now = Date.now();
    return [...t].filter(([, until]) => until > now).map(([user]) => user);
  }

  // The account

  /** setView keeps the user view of a login, a settings reply or an UpdateUser push. The
   * session token is not kept in it: it lives in this.auth only. */
  setView(view) {
    const {session, cmd, rid, ...rest} = view; // eslint-disable-line no-unused-vars
    this.view = rest;
    if (Array.isArray(rest.ScheduledMessages)) this.applyScheduled(rest.ScheduledMessages);
    this.emit('user', {view: rest});
  }

  // Scheduled messages (DESIGN §3.2, §6). The user view lists them; AddScheduledMessage and
  // RemoveScheduledMessage push nothing, so the list here follows our own changes too, and a
  // delivered one (a message whose client_id is "scheduled-" and its ID) leaves it.

  /** applyScheduled takes the list of a user view, keeping what was changed here meanwhile. */
  applyScheduled(list) {
    const now = Date.now();
    for (const [id, e] of this.scheduleEdits) if (now - e.at > SCHEDULE_EDIT_MS) this.scheduleEdits.delete(id);
    const byId = new Map();
    for (const s of list) {
      if (s && Number.isFinite(s.ID) && typeof s.CID === 'string' && typeof s.Time === 'string') {
        byId.set(s.ID, {ID: s.ID, CID: s.CID, Time: s.Time, Content: String(s.Content || '')});
      }
    }
    for (const [id, e] of this.scheduleEdits) {
      if (e.removed) byId.delete(id);
      else if (!byId.has(id)) byId.set(id, e.item);
    }
    this.setScheduled([...byId.values()]);
  }

  setScheduled(list) {
    this.scheduled = [...list].sort((a, b) => (a.Time < b.Time ? -1 : a.Time > b.Time ? 1 : a.ID - b.ID));
    if (this.store) this.store.setMeta('scheduled', this.scheduled);
    this.emit('scheduled');
  }

  /** scheduledIn lists our scheduled messages for one conversation, soonest first. */
  scheduledIn(cid) {
    return this.scheduled.filter((s) => s.CID === cid);
  }

  dropScheduled(id) {
    const item = this.scheduled.find((s) => s.ID === id);
    this.scheduleEdits.set(id, {item, removed: true, at: Date.now()});
    if (item) this.setScheduled(this.scheduled.filter((s) => s.ID !== id));
  }

  /** noteDelivered: a message from the server may be one of ours that was scheduled. */
  noteDelivered(m) {
    const cid = m && typeof m.client_id === 'string' ? m.client_id : '';
    if (!cid.startsWith(SCHEDULED_PREFIX) || !sameUser(m.f_username, this.me)) return;
    const id = Number(cid.slice(SCHEDULED_PREFIX.length));
    if (Number.isSafeInteger(id)) this.dropScheduled(id);
  }

  /** schedule has the server send a message at a time (a Date); resolves to the new entry. */
  async schedule(cid, content, when) {
    if (!content.trim()) throw new Error('empty message');
    if (codePoints(content) > MAX_CONTENT) {
      throw new Error(`a message has at most ${MAX_CONTENT} characters (this one has ${codePoints(content)})`);
    }
    this.requireOnline('AddScheduledMessage');
    const Time = wireTime(when);
    const ack = await this.request('AddScheduledMessage', {CID: cid, Time, Content: content});
    const item = {ID: ack.id, CID: cid, Time, Content: content};
    this.scheduleEdits.set(item.ID, {item, removed: false, at: Date.now()});
    this.setScheduled([...this.scheduled.filter((s) => s.ID !== item.ID), item]);
    return item;
  }

  /** unschedule cancels a scheduled message. One the server no longer has (sent, or
   * cancelled on another device) leaves the list too, and the server's words say why. */
  async unschedule(id) {
    this.requireOnline('RemoveScheduledMessage');
    try {
      await this.request('RemoveScheduledMessage', {ID: id});
    } catch (err) {
      if (err instanceof ServerError && /no such scheduled message/i.test(err.message)) this.dropScheduled(id);
      throw err;
    }
    this.dropScheduled(id);
  }

  /**
   * account sends a settings command (ChangeUserEmail, BlockUser, …) and takes the user view it
   * answers with. A reply that carries a new session token (ChangeUserPassword: the old token
   * is revoked with every other) is stored as a login's is, so that a reload resumes with it.
   */
  async account(cmd, fields) {
    this.requireOnline(cmd);
    const rep = await this.request(cmd, fields);
    if (rep && typeof rep.session === 'string' && rep.session && this.auth) {
      this.auth = {username: this.auth.username, session: rep.session};
      localStorage.setItem(AUTH_KEY, JSON.stringify(this.auth));
      this.emit('session'); // things tied to the old session (file tokens) need renewing
    }
    if (rep && typeof rep.Username === 'string') this.setView(rep);
    return rep;
  }

  /** deleteAccount deletes the user (the password confirms it) and everything of it here. */
  async deleteAccount(password) {
    this.requireOnline('DeleteUser');
    try {
      await this.request('DeleteUser', {password});
    } catch (err) {
      // The server closes our sessions once the account is gone; if that overtook the reply,
      // the DeleteUser push has said it already.
      if (!(err instanceof ConnectionError && this.deleted)) throw err;
    }
    await this.serially(() => this.onDeleted());
  }

  /** onDeleted: the account is gone (deleted here or on another device): so is its copy here. */
  async onDeleted() {
    if (this.deleted) return;
    this.deleted = true;
    this.loggedIn = false;
    await this.forgetLocal();
    this.emit('deleted');
  }

  // Requests

  /**
   * request sends a command. A user's request rejects (with err.cmd set) for the caller to
   * show; a background one (read receipts, typing, sync marks) reports what the server said
   * as a problem, ignores a lost connection (it is redone after the next login), and resolves
   * to null on failure.
   */
  async request(cmd, fields, {background = false} = {}) {
    try {
      return await this.conn.request(cmd, fields);
    } catch (err) {
      err.cmd = err.cmd || cmd;
      if (!background) throw err;
      if (!(err instanceof ConnectionError)) this.problem(describeError(err, cmd));
      return null;
    }
  }

  requireOnline(cmd) {
    if (!this.loggedIn) {
      const err = new ConnectionError('wait until you are back online');
      err.cmd = cmd;
      throw err;
    }
  }

  // Conversations

  /** openConvo marks a conversation as the one on screen (null for none). */
  openConvo(cid) {
    this.openCid = cid;
    this.store.setMeta('openCid', cid);
    if (cid && this.loggedIn && this.metaStale.delete(cid)) this.syncConvo(cid);
  }

  /** setAttentive: whether the user can see the end of the open conversation (page visible,
   * scrolled to the bottom). Messages arriving then count as read. */
  setAttentive(on) {
    this.attentive = on;
    if (on && this.openCid) this.markRead(this.openCid);
  }

  /** directConvo is our one-to-one conversation with a user (just the two of us), if any. */
  directConvo(username) {
    return this.store.convoList().find((c) => c.Members.length === 2 &&
      c.Members.some((m) => sameUser(m.username, username)) &&
      c.Members.some((m) => sameUser(m.username, this.me))) || null;
  }

  async createConvo(name, members) {
    this.requireOnline('CreateConversation');
    const ack = await this.request('CreateConversation', {Name: name, Members: members});
    const cid = ack.CID;
    if (!this.store.convo(cid)) {
      // The push with the members as registered follows; until then show what we asked for.
      this.store.upsertConvo(cid, {
        Name: name, M_time: wireTime(new Date()), historyComplete: true,
        Members: [this.me, ...members].map((username) => ({username, read_time: ''})),
      });
      this.emit('convos');
    }
    return cid;
  }

  async rename(cid, name) {
    this.requireOnline('ChangeConvoName');
    await this.request('ChangeConvoName', {CID: cid, Name: name});
  }

  async addMembers(cid, names) {
    this.requireOnline('AddUsersToConversation');
    await this.request('AddUsersToConversation', {CID: cid, Members: names});
  }

  async removeMember(cid, username) {
    this.requireOnline('RemoveUserFromConversation');
    await this.request('RemoveUserFromConversation', {CID: cid, Username: username});
  }

  async leave(cid) {
    const c = this.store.convo(cid);
    if (c && c.Removed) {
      this.dropConvo(cid, c.Name); // not a member any more: clearing it is local
      return;
    }
    this.requireOnline('RemoveUserFromConversation');
    this.leaving.add(cid);
    try {
      await this.request('RemoveUserFromConversation', {CID: cid, Username: this.me});
    } finally {
      this.leaving.delete(cid);
    }
    if (this.store.convo(cid)) this.dropConvo(cid, c ? c.Name : '');
  }

  /** loadOlder returns up to a page of messages older than `before` (a record): from the
   * device if it has them, else from the server. [] means the start of the conversation. */
  async loadOlder(cid, before) {
    const local = this.store.messagesOf(cid, {before, limit: 60});
    if (local.length) return local;
    const c = this.store.convo(cid);
    if (!c || c.historyComplete) return [];
    this.requireOnline('GetMoreConvoMessages');
    const oldest = this.store.oldestStored(cid);
    const data = await this.request('GetMoreConvoMessages', {
      CID: cid, M_time: oldest ? oldest.m_time : wireTime(new Date()),
    });
    const msgs = Array.isArray(data.Messages) ? data.Messages : [];
    for (const m of msgs) this.store.putServerMessage(cid, m, this.me);
    if (msgs.length < PAGE) this.store.upsertConvo(cid, {historyComplete: true});
    return this.store.messagesOf(cid, {before, limit: 60});
  }

  /** markRead tells the server (and our other devices) that we have seen the conversation up
   * to its newest message. Called when the user is looking at it. */
  markRead(cid) {
    const c = this.store.convo(cid);
    if (!c) return;
    const hadUnread = c.UnreadCount > 0;
    if (hadUnread) {
      this.store.upsertConvo(cid, {UnreadCount: 0});
      this.emit('convos');
    }
    if (!this.loggedIn || this.needsSync.has(cid) || c.Removed) return; // again after the sync
    const newest = this.store.newestMessage(cid);
    const mine = c.Members.find((m) => sameUser(m.username, this.me));
    const readTime = (mine && mine.read_time) || '';
    if (newest && newest > readTime && newest > (this.readSent.get(cid) || '')) {
      this.readSent.set(cid, newest);
      this.request('UpdateUserStatus', {CID: cid, NewReadTime: newest}, {background: true}).then((ok) => {
        if (!ok && this.readSent.get(cid) === newest) this.readSent.delete(cid); // lost: send again later
      });
    }
    if (hadUnread && !c.Removed) this.request('UpdateUnreadCount', {CID: cid, unread_count: 0}, {background: true});
  }

  /** noteTyping is called on each edit of the composer; it sends at most one notification
   * per TYPING_EVERY_MS, and a "stopped" one after TYPING_IDLE_MS without edits. */
  noteTyping(cid) {
    if (!this.loggedIn) return;
    const now = Date.now();
    let t = this.typingSent.get(cid);
    if (!t) this.typingSent.set(cid, (t = {at: 0, timer: 0}));
    if (now - t.at >= TYPING_EVERY_MS) {
      t.at = now;
      this.request('UpdateUserStatus', {CID: cid, Typing: true}, {background: true});
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stopTyping(cid, true), TYPING_IDLE_MS);
  }

  /** stopTyping: after sending (notify false: the message itself clears the indicator) or
   * after a pause (notify true). */
  stopTyping(cid, notify) {
    const t = this.typingSent.get(cid);
    if (!t || !t.at) return;
    clearTimeout(t.timer);
    t.at = 0;
    if (notify && this.loggedIn) this.request('UpdateUserStatus', {CID: cid, Typing: false}, {background: true});
  }

  // Sending

  /** send writes a message: shown at once as pending, persisted in the outbox, and sent now if
   * we are online (or when we are next). Returns the record, or throws if it is not sendable. */
  send(cid, content, reply = null) {
    if (!content.trim()) throw new Error('empty message');
    if (codePoints(content) > MAX_CONTENT) {
      throw new Error(`a message has at most ${MAX_CONTENT} characters (this one has ${codePoints(content)})`);
    }
    const record = this.store.addPending(cid, content, `w${randomId(16)}`, this.me, reply && reply.id ? reply : null);
    this.store.save().catch((err) => this.problem(`Couldn't save your message on this device: ${err.message}`));
    this.stopTyping(cid, false);
    this.emit('message', {cid, record, added: true});
    this.emit('convos');
    this.setState(this.state);
    this.flushOutbox();
    return record;
  }

  /** flushOutbox sends unsent messages one at a time, oldest first, each with its client_id:
   * a resend of a message the server already stored (its ack was lost with the connection)
   * stores nothing new, so every message is stored exactly once. */
  async flushOutbox() {
    if (this.flushing || !this.loggedIn || !this.store) return;
    this.flushing = true;
    try {
      for (let item = this.store.outboxItems()[0]; item && this.loggedIn; item = this.store.outboxItems()[0]) {
        try {
          const fields = {CID: item.CID, content: item.content, client_id: item.client_id};
          if (item.reply_to) Object.assign(fields, {reply_to: item.reply_to, reply_m_time: item.reply_m_time || ''});
          const ack = await this.conn.request('SendMessage', fields);
          await this.serially(() => this.onAck(item, ack));
        } catch (err) {
          if (err instanceof ConnectionError) {
            // Resent after the next login; or, if only the reply went missing, in a while.
            if (this.loggedIn) setTimeout(() => this.flushOutbox(), 5000);
            break;
          }
          if (isTransient(err)) {
            await sleep(1000);
            continue;
          }
          const record = this.store.failMessage(item.client_id, err.message);
          this.problem(describeError(err, 'SendMessage'));
          if (record) this.emit('message', {cid: item.CID, record, added: false});
        }
      }
    } finally {
      this.flushing = false;
      this.setState(this.state);
    }
  }

  onAck(item, ack) {
    const {record, confirmed} = this.store.putServerMessage(ack.CID || item.CID, {
      id: ack.id, m_time: ack.m_time, client_id: ack.client_id || item.client_id,
      f_username: this.me, content: item.content,
    }, this.me);
    this.store.outbox.findAndRemove({client_id: item.client_id});
    if (confirmed) {
      this.emit('message', {cid: item.CID, record, added: false});
      this.emit('convos');
    }
    this.store.save().catch(() => {}); // autosave retries
  }

  // Changes to stored messages (DESIGN §3.2): sent at once, never queued; the change comes back
  // as a push to every session, ours included, which applies it.

  /** change sends EditMessage, DeleteMessage or React about a stored message record. */
  async change(cmd, record, fields) {
    this.requireOnline(cmd);
    if (!record || !record.id) throw new Error('the message is not sent yet');
    return this.request(cmd, {CID: record.CID, ID: record.id, M_time: record.m_time, client_id: `c${randomId(16)}`, ...fields});
  }

  editMessage(record, content) {
    if (!content.trim()) throw new Error('empty message');
    if (codePoints(content) > MAX_CONTENT) throw new Error(`a message has at most ${MAX_CONTENT} characters`);
    return this.change('EditMessage', record, {content});
  }

  /** deleteMessage deletes a message for everyone; a file we shared goes with it (its space
   * comes back to our quota). */
  async deleteMessage(record) {
    const rep = await this.change('DeleteMessage', record, {});
    const f = parseFileMessage(record.content);
    if (f && sameUser(record.f_username, this.me)) {
      this.request('RemoveConvoFile', {CID: record.CID, fileURL: f.url}, {background: true});
    }
    return rep;
  }

  /** react sets our reaction to a message: emoji on, or off (one per user per message). */
  react(record, emoji, on) {
    return this.change('React', record, {emoji, on});
  }

  /** search finds messages in our conversations (or one), newest first; before pages on. */
  async search(query, {cid = '', before = ''} = {}) {
    this.requireOnline('SearchMessages');
    const fields = {query};
    if (cid) fields.CID = cid;
    if (before) fields.before = before;
    const rep = await this.request('SearchMessages', fields);
    return {results: Array.isArray(rep.Results) ? rep.Results : [], more: !!rep.More};
  }

  retry(clientId) {
    const record = this.store.retryMessage(clientId);
    if (!record) return;
    this.emit('message', {cid: record.CID, record, added: false});
    this.flushOutbox();
  }

  discard(clientId) {
    const record = this.store.deleteUnsent(clientId);
    if (record) {
      this.emit('reset', {cid: record.CID});
      this.emit('convos');
    }
  }
}

function readJSON(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || 'null');
  } catch {
    return null;
  }
}
