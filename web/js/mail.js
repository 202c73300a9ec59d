// Mail (DESIGN §3.2 "Mail"): the user's mailbox beside the conversations. Folders (Inbox,
// Starred, Sent, Drafts, Trash), reading an e-mail (text as text; HTML only in a sandboxed
// iframe without scripts, under a CSP of its own), flags, empty trash, and what a reply or a
// forward starts with; the composer and invitations are mailcompose.js's.
//
// The mailbox lives in memory: the newest page on the first login of the page (GetAllEmails),
// older pages on demand (BeforeID), and afterwards only what changed since the sync point
// (GetAllEmails {M_time}, following More) after every login and on the server's Resync. Live
// EmailReceived and EmailUpdated pushes come in between. An e-mail is replaced only by a version
// with an M_time at least as new, so a late reply never undoes a newer push; removed e-mails
// stay as markers for the same reason.
//
// Lists and pushes carry summaries (headers, flags, Preview, attachment names): an e-mail's
// bodies, every address and the attachments' download links come with GetEmail when it is
// opened (or answered, forwarded, edited as a draft), and are kept on the device (store.js
// mailbodies), so it opens offline next time. One whose body never came says so offline.

import {ConnectionError} from './conn.js';
import {describeError} from './chat.js';
import {confirmDialog} from './dialogs.js';
import {Composer} from './mailcompose.js';
import {formatSize} from './files.js';
import {el, icon, parseWireTime, shortTime, fullTime, sameUser} from './util.js';

const $ = (id) => document.getElementById(id);

const FOLDERS = {
  inbox: (e) => e.Folder === 'inbox' && !e.Deleted,
  starred: (e) => e.Starred && !e.Deleted,
  sent: (e) => e.Folder === 'sent' && !e.Deleted,
  drafts: (e) => e.Folder === 'drafts' && !e.Deleted,
  trash: (e) => !!e.Deleted,
};
const EMPTY_TEXT = {
  inbox: 'No e-mail yet.',
  starred: 'Star an e-mail to find it here.',
  sent: 'Nothing sent yet.',
  drafts: 'No drafts.',
  trash: 'The Trash is empty.',
};
const EPOCH = '2000-01-01T00:00:00.000000Z'; // a sync point before everything
const COUNT_DELAY_MS = 1500;
// The HTML of an e-mail is sanitised by the server; on top of that its frame may load nothing
// (only images inside the message) and run nothing (the sandbox has no allow-scripts).
const FRAME_CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'";
const FRAME_SANDBOX = 'allow-popups allow-popups-to-escape-sandbox';
// Images of the message itself (cid: links to its parts) are shown inline as data: URLs, up to
// this size each, in the formats every browser shows without surprises.
const MAX_INLINE = 2 * 1024 * 1024;
const INLINE_TYPES = /^image\/(png|jpeg|gif|webp)$/i;
const CLIP = 'M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z';

/** unreadInInbox: whether an e-mail counts in the user view's UnreadEmails. */
const unreadInInbox = (e) => !!(e && !e.Removed && e.Folder === 'inbox' && e.Unread && !e.Deleted);

/** sender: "Name <address>", or the address alone. */
function sender(e) {
  if (e.FromName && e.From && e.FromName !== e.From) return `${e.FromName} <${e.From}>`;
  return e.From || e.FromName || '';
}

/** isWhole: an e-mail as GetEmail answers it (or as written here), bodies included. */
const isWhole = (e) => typeof e.Text === 'string' || typeof e.HTML === 'string';

/** summaryOf: what the list keeps of an e-mail (its bodies go to the body cache). */
function summaryOf(e) {
  if (!isWhole(e)) return e;
  const {Text, HTML, ...s} = e;
  if (typeof s.Preview !== 'string') s.Preview = (Text || '').replace(/\s+/g, ' ').trim().slice(0, 200);
  return s;
}

/** linksExpire: when the first signed attachment link of a body expires (ms; Infinity if none). */
function linksExpire(body) {
  let at = Infinity;
  for (const a of body.Attachments || []) {
    const exp = a && a.URL ? Number(new URL(a.URL, location.href).searchParams.get('exp')) : 0;
    if (exp) at = Math.min(at, exp * 1000);
  }
  return at;
}

/** textOf: an e-mail's text with plain line ends. */
function textOf(e) {
  return (e.Text || '').replace(/\r\n?/g, '\n');
}

function quote(text) {
  return text.replace(/\s+$/, '').split('\n').map((l) => `> ${l}`).join('\n');
}

function prefixed(prefix, subject) {
  const s = subject || '';
  return new RegExp(`^${prefix}:`, 'i').test(s) ? s : `${prefix}: ${s}`;
}

/** inlineImages puts the message's own images (its cid: parts) into its HTML as data: URLs: the
 * frame may load nothing, so they come through this page (same origin, signed URLs). */
async function inlineImages(e) {
  let html = e.HTML;
  const parts = (e.Attachments || []).filter((a) => a && a.ContentID && a.URL && INLINE_TYPES.test(a.Type || '') &&
    a.Size <= MAX_INLINE && html.includes(`"cid:${a.ContentID}"`));
  for (const a of parts) {
    try {
      const res = await fetch(a.URL, {credentials: 'same-origin'});
      if (!res.ok) continue;
      const blob = new Blob([await res.arrayBuffer()], {type: a.Type.toLowerCase()});
      const url = await new Promise((resolve, reject) => {
        const r = new FileReader();
        r.onload = () => resolve(String(r.result));
        r.onerror = () => reject(r.error);
        r.readAsDataURL(blob);
      });
      // A data: URL of base64 text cannot end the attribute it goes into.
      if (/^data:image\/[a-z]+;base64,[A-Za-z0-9+/=]*$/.test(url)) html = html.split(`"cid:${a.ContentID}"`).join(`"${url}"`);
    } catch {
      // Left as it was: the image shows as its alt text.
    }
  }
  return html;
}

export class Mail {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {function(string)} opts.announce
   * @param {function()} opts.onShow   the mail view takes the place of the conversation
   * @param {function()} opts.onBack   back to the sidebar (phones)
   */
  constructor(chat, {toast, announce, onShow, onBack}) {
    this.chat = chat;
    this.toast = toast;
    this.announce = announce;
    this.onShow = onShow;
    this.onBack = onBack;
    this.reset('');
    this.folder = 'inbox';
    this.composer = new Composer(chat, {
      toast, announce,
      onEmail: (e) => {
        this.apply(e, true);
        this.render();
      },
    });
    this.countTimer = 0;

    chat.addEventListener('loggedin', (e) => this.onLogin(e.detail.username));
    chat.addEventListener('user', (e) => this.onView(e.detail.view));
    chat.conn.addEventListener('push', (e) => this.onPush(e.detail));
    this.bind();
  }

  /** reset forgets the mailbox (another user logged in on this page). */
  reset(user) {
    this.me = user;
    this.emails = new Map(); // ID → e-mail; removed ones stay as {ID, M_time, Removed}
    this.loaded = false; // the newest page has been read
    this.more = false; // older e-mails than the oldest page read exist
    this.oldest = 0; // the smallest ID of the pages read (for BeforeID)
    this.syncPoint = '';
    this.syncing = null;
    this.syncAgain = false;
    this.unreadBase = 0; // UnreadEmails of the last user view…
    this.unreadDelta = 0; // …and what live changes did to it since
    this.address = '';
    this.openId = 0;
    this.plain = false;
    this.shownKey = '';
    this.quota = {full: false, used: 0, limit: 0}; // the mailbox's size, from GetAllEmails
    this.fetching = new Map(); // ID → the GetEmail under way
    this.bodyErrors = new Map(); // ID → why its body could not be read
  }

  get visible() {
    return $('chat-view').dataset.view === 'mail';
  }

  // Wiring

  bind() {
    $('mail-btn').addEventListener('click', () => this.show());
    $('mail-back').addEventListener('click', () => this.onBack());
    $('mail-list-back').addEventListener('click', () => this.closeMessage({focus: true}));
    $('mail-compose-btn').addEventListener('click', () => this.composer.compose({}));
    $('mail-older').addEventListener('click', () => this.loadOlder());
    $('mail-empty-trash').addEventListener('click', () => this.emptyTrash());
    $('mail-plain-btn').addEventListener('click', () => {
      this.plain = !this.plain;
      this.renderReader();
    });
    for (const b of $('mail-folders').querySelectorAll('[data-folder]')) {
      b.addEventListener('click', () => this.selectFolder(b.dataset.folder));
    }
    for (const b of $('mail-message').querySelectorAll('[data-act]')) {
      b.addEventListener('click', () => this.act(b.dataset.act));
    }
  }

  // Loading and syncing

  onLogin(username) {
    if (!sameUser(this.me, username)) {
      this.reset(username);
      this.onView(this.chat.view); // the login's view came just before: its count is current
      this.render();
    }
    this.sync();
    if (this.openId) this.loadBody(this.openId); // it may have been waiting for the connection
  }

  onView(view) {
    if (!view) return;
    if (typeof view.UnreadEmails === 'number') {
      this.unreadBase = view.UnreadEmails;
      this.unreadDelta = 0;
    }
    if (typeof view.MailAddress === 'string' && view.MailAddress) this.address = view.MailAddress;
    this.renderCounts();
    this.renderAddress();
  }

  /** sync brings the mailbox up to date: the newest page the first time, then the changes
   * since the sync point, page by page. */
  sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          if (this.loaded) await this.syncSince();
          else await this.loadNewest();
        } while (this.syncAgain && this.chat.loggedIn);
      } catch (err) {
        if (!(err instanceof ConnectionError)) this.toast(describeError(err, 'GetAllEmails'));
      } finally {
        this.syncing = null;
        this.render();
      }
    })();
    return this.syncing;
  }

  async loadNewest() {
    const rep = await this.chat.request('GetAllEmails', {});
    const list = Array.isArray(rep.Emails) ? rep.Emails : [];
    for (const e of list) this.apply(e);
    this.loaded = true;
    this.more = !!rep.More;
    this.oldest = list.length ? Math.min(...list.map((e) => e.ID)) : 0;
    this.syncPoint = rep.M_time || EPOCH;
    if (rep.MailAddress) this.address = rep.MailAddress;
    this.takeQuota(rep);
  }

  /** takeQuota keeps what a GetAllEmails reply says of the mailbox's size. */
  takeQuota(rep) {
    if (typeof rep.MailboxFull !== 'boolean') return;
    this.quota = {full: rep.MailboxFull, used: Number(rep.MailUsed) || 0, limit: Number(rep.MailQuota) || 0};
  }

  async syncSince() {
    let since = this.syncPoint || EPOCH;
    for (;;) {
      const rep = await this.chat.request('GetAllEmails', {M_time: since});
      for (const e of Array.isArray(rep.Emails) ? rep.Emails : []) this.apply(e);
      this.takeQuota(rep);
      if (rep.M_time && rep.M_time > since) since = rep.M_time;
      this.syncPoint = since;
      if (!rep.More) return;
    }
  }

  async loadOlder() {
    const btn = $('mail-older');
    btn.disabled = true;
    try {
      const rep = await this.chat.request('GetAllEmails', {BeforeID: this.oldest});
      const list = Array.isArray(rep.Emails) ? rep.Emails : [];
      for (const e of list) this.apply(e);
      this.more = !!rep.More;
      if (list.length) this.oldest = Math.min(this.oldest, ...list.map((e) => e.ID));
    } catch (err) {
      this.toast(describeError(err, 'GetAllEmails'));
    } finally {
      btn.disabled = false;
      this.render();
    }
  }

  /** apply takes an e-mail from a reply or push, unless what we have is newer. live: a change
   * happening now (a push, our own command), which moves the unread count. A whole e-mail's
   * bodies go to the body cache (whatever its M_time: they are its bodies as of then). */
  apply(whole, live = false) {
    if (!whole || typeof whole.ID !== 'number') return false;
    if (whole.Removed) this.dropBody(whole.ID);
    else if (isWhole(whole)) this.keepBody(whole);
    const e = summaryOf(whole);
    const prev = this.emails.get(e.ID);
    if (prev && (prev.M_time || '') > (e.M_time || '')) return false;
    if (live) {
      this.unreadDelta += Number(unreadInInbox(e)) - Number(unreadInInbox(prev));
      if (!prev && !this.complete) this.refreshCount(); // how it was is unknown: ask
    }
    this.emails.set(e.ID, e);
    return true;
  }

  /** complete: every e-mail of the mailbox is here, so counts can be made here. */
  get complete() {
    return this.loaded && !this.more;
  }

  /** refreshCount asks the server for the unread count (after a change to an e-mail we had
   * not loaded, whose old state we cannot know). */
  refreshCount() {
    clearTimeout(this.countTimer);
    this.countTimer = setTimeout(async () => {
      const v = await this.chat.request('GetUserView', {}, {background: true});
      if (v && typeof v.UnreadEmails === 'number') {
        this.unreadBase = v.UnreadEmails;
        this.unreadDelta = 0;
        this.renderCounts();
      }
    }, COUNT_DELAY_MS);
  }

  onPush(p) {
    if (!p || typeof p.cmd !== 'string' || typeof p.error === 'string') return;
    switch (p.cmd) {
      case 'EmailReceived': {
        const e = p.Email;
        if (!this.apply(e, true)) return;
        if (e.Folder === 'inbox') this.announce(`New e-mail from ${e.FromName || e.From}: ${e.Subject || '(no subject)'}`);
        this.render();
        if (e.Auth === 'local' && this.loaded) this.sync(); // the server's own notice: the mailbox's state changed
        break;
      }
      case 'EmailUpdated':
        if (this.apply(p.Email, true)) this.render();
        break;
      case 'Resync':
        if (this.loaded) this.sync();
        break;
      default:
        break;
    }
  }

  // Bodies

  /** body is what is kept of an e-mail's body here (null if nothing). */
  body(id) {
    const store = this.chat.store;
    return store ? store.mailBody(id) : null;
  }

  keepBody(e) {
    this.bodyErrors.delete(e.ID);
    if (this.chat.store) this.chat.store.putMailBody(e);
  }

  dropBody(id) {
    if (this.chat.store) this.chat.store.dropMailBody(id);
  }

  /** bodyCurrent: the body kept here still serves (a draft changes; download links expire). */
  bodyCurrent(e, body) {
    if (!body) return false;
    if (e.Folder === 'drafts' && (body.M_time || '') < (e.M_time || '')) return false;
    return linksExpire(body) > Date.now() + 60000;
  }

  /** whole is the e-mail with its body: from the device when it still serves, else fetched
   * (GetEmail); offline, what the device has, or null. */
  async whole(e) {
    const kept = this.body(e.ID);
    if (this.bodyCurrent(e, kept) || (kept && !this.chat.loggedIn)) return {...e, ...kept, M_time: e.M_time};
    if (!this.chat.loggedIn) return null;
    let p = this.fetching.get(e.ID);
    if (!p) {
      p = this.chat.request('GetEmail', {ID: e.ID}).then((rep) => {
        if (rep && rep.Email) this.apply(rep.Email);
      }).finally(() => this.fetching.delete(e.ID));
      this.fetching.set(e.ID, p);
    }
    await p;
    const body = this.body(e.ID);
    return body ? {...(this.emails.get(e.ID) || e), ...body} : null;
  }

  /** loadBody fetches the open e-mail's body if it is missing, showing that it loads. */
  async loadBody(id) {
    const e = this.emails.get(id);
    if (!e || e.Removed || (e.Folder === 'drafts' && !e.Deleted)) return;
    if (this.bodyCurrent(e, this.body(id))) {
      this.chat.store.touchMailBody(id);
      return;
    }
    if (!this.chat.loggedIn || this.fetching.has(id)) return;
    this.bodyErrors.delete(id);
    const shown = this.whole(e);
    this.renderReader(); // the loading state
    try {
      await shown;
    } catch (err) {
      if (!(err instanceof ConnectionError)) this.bodyErrors.set(id, describeError(err, 'GetEmail'));
    }
    if (this.openId === id) this.renderReader();
  }

  /** wholeOrSay is whole(e), or null after telling why there is none. */
  async wholeOrSay(e) {
    try {
      const w = await this.whole(e);
      if (w) return w;
      this.toast('This e-mail has not been downloaded yet. Try again when you are back online.');
    } catch (err) {
      this.toast(describeError(err, 'GetEmail'));
    }
    return null;
  }

  // Counts

  unreadCount() {
    if (!this.complete) return Math.max(0, this.unreadBase + this.unreadDelta);
    let n = 0;
    for (const e of this.emails.values()) if (unreadInInbox(e)) n++;
    return n;
  }

  folderCount(folder) {
    if (folder === 'inbox') return this.unreadCount();
    let n = 0;
    for (const e of this.emails.values()) {
      if (e.Removed || !FOLDERS[folder](e)) continue;
      if (folder === 'drafts' || (folder === 'starred' && e.Unread)) n++;
    }
    return folder === 'drafts' || folder === 'starred' ? n : 0;
  }

  // The view

  show() {
    $('chat-view').dataset.view = 'mail';
    $('mail-btn').setAttribute('aria-pressed', 'true');
    this.onShow();
    this.render();
    const current = $('mail-folders').querySelector(`[data-folder="${this.folder}"]`);
    if (current) current.focus();
  }

  hide() {
    $('chat-view').dataset.view = 'chat';
    $('mail-btn').setAttribute('aria-pressed', 'false');
  }

  selectFolder(folder) {
    if (!FOLDERS[folder]) return;
    this.folder = folder;
    this.closeMessage({focus: false});
    this.render();
  }

  render() {
    this.renderCounts();
    this.renderAddress();
    if (!this.visible) return;
    this.renderQuota();
    this.renderList();
    this.renderReader();
  }

  renderQuota() {
    const {full, used, limit} = this.quota;
    const box = $('mail-full');
    box.hidden = !full;
    box.textContent = full
      ? `Your mailbox is full${limit ? ` (${formatSize(used)} of ${formatSize(limit)})` : ''}: new mail is being refused. Delete mail you no longer need and empty the Trash to receive mail again.`
      : '';
  }

  renderAddress() {
    $('mail-address').textContent = this.address;
    $('set-mail-address').textContent = this.address || 'shown once you are online';
  }

  renderCounts() {
    const n = this.unreadCount();
    const badge = $('mail-badge');
    badge.textContent = n > 99 ? '99+' : String(n);
    badge.hidden = n === 0;
    $('mail-btn').setAttribute('aria-label', n ? `Mail, ${n} unread` : 'Mail');
    for (const b of $('mail-folders').querySelectorAll('[data-folder]')) {
      const c = this.folderCount(b.dataset.folder);
      b.querySelector('.count').textContent = c ? String(c) : '';
      b.setAttribute('aria-current', String(b.dataset.folder === this.folder));
    }
  }

  /** inFolder lists the current folder's e-mails, newest first. */
  inFolder() {
    const test = FOLDERS[this.folder];
    return [...this.emails.values()].filter((e) => !e.Removed && test(e)).sort((a, b) => b.ID - a.ID);
  }

  renderList() {
    const list = $('mail-list');
    const items = this.inFolder();
    const focusedId = document.activeElement && list.contains(document.activeElement)
      ? document.activeElement.dataset.id : '';
    list.replaceChildren(...items.map((e) => this.listItem(e)));
    if (focusedId) {
      const again = list.querySelector(`[data-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    let empty = '';
    if (!items.length) empty = this.loaded ? EMPTY_TEXT[this.folder] : 'Your mail loads once you are online.';
    $('mail-empty').textContent = empty;
    $('mail-empty').hidden = !empty;
    $('mail-older').hidden = !this.more;
    $('mail-trash-bar').hidden = this.folder !== 'trash' || !items.length;
    $('mail-pane').dataset.folder = this.folder;
  }

  listItem(e) {
    const mine = e.Folder === 'sent' || e.Folder === 'drafts';
    const to = [...(e.To || []), ...(e.Cc || [])].join(', ');
    const who = mine ? `To: ${to || '(nobody yet)'}` : (e.FromName || e.From || '(unknown sender)');
    const d = parseWireTime(e.Date);
    const snippet = (e.Preview || '').slice(0, 140);
    const label = [e.Unread ? 'Unread.' : '', e.Folder === 'drafts' ? 'Draft.' : '', who,
      e.Unverified ? '(unverified sender)' : '', e.Subject || '(no subject)',
      d ? fullTime(d) : ''].filter(Boolean).join(' ');
    return el('li', {},
      el('button', {
        type: 'button', class: `mail-item${e.Unread ? ' unread' : ''}`, dataset: {id: String(e.ID)},
        'aria-current': String(e.ID === this.openId), 'aria-label': label,
        onclick: () => this.open(e.ID),
      },
      el('span', {class: 'mi-from'}, e.Folder === 'drafts' ? el('span', {class: 'mi-draft'}, 'Draft ') : null, who,
        e.Unverified ? el('span', {class: 'mi-unverified'}, ' unverified') : null),
      el('time', {class: 'mi-date', datetime: e.Date || ''}, d ? shortTime(d) : ''),
      el('span', {class: 'mi-subject'}, e.Subject || '(no subject)'),
      el('span', {class: 'mi-flags', 'aria-hidden': 'true'},
        e.AttachmentCount || (e.Attachments && e.Attachments.length) ? icon(CLIP) : null, e.Starred ? '★' : ''),
      el('span', {class: 'mi-snippet'}, snippet)));
  }

  // Reading

  /** open shows an e-mail (a draft opens in the composer), and marks it read. */
  open(id) {
    const e = this.emails.get(id);
    if (!e || e.Removed) return;
    if (e.Folder === 'drafts' && !e.Deleted) {
      this.editDraft(e);
      return;
    }
    if (this.openId !== id) this.plain = false;
    this.openId = id;
    $('mail-pane').dataset.mailpane = 'read';
    this.render();
    $('mail-subject').focus();
    this.loadBody(id);
    if (e.Unread) this.setFlag(e, 'MarkEmailUnread', {Unread: false});
  }

  closeMessage({focus}) {
    const id = this.openId;
    this.openId = 0;
    $('mail-pane').dataset.mailpane = 'list';
    this.renderReader();
    if (!focus) return;
    this.renderList();
    const item = $('mail-list').querySelector(`[data-id="${id}"]`);
    (item || $('mail-folders').querySelector('[aria-current=true]')).focus();
  }

  renderReader() {
    const e = this.emails.get(this.openId);
    if (this.openId && (!e || e.Removed)) {
      this.openId = 0;
      $('mail-pane').dataset.mailpane = 'list';
    }
    $('mail-none').hidden = !!this.openId;
    $('mail-message').hidden = !this.openId;
    if (!this.openId) {
      $('mail-content').replaceChildren();
      this.shownKey = '';
      return;
    }
    $('mail-subject').textContent = e.Subject || '(no subject)';
    $('mail-subject').tabIndex = -1;
    // The summary's lists are cut short: the whole e-mail's, once its body is here.
    const kept = this.body(e.ID);
    const w = kept ? {...e, ...kept, M_time: e.M_time} : e;
    const d = parseWireTime(e.Date);
    const rows = [['From', sender(e)], ['To', (w.To || []).join(', ')], ['Cc', (w.Cc || []).join(', ')],
      ['Date', d ? fullTime(d) : '']].filter(([, v]) => v);
    $('mail-headers').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const unverified = !!(e.Unverified || w.Unverified);
    $('mail-unverified').hidden = !unverified;
    $('mail-unverified').textContent = unverified
      ? `Unverified sender: this server could not confirm that this e-mail comes from ${e.From || 'its sender'}. Be careful with its links and attachments.`
      : '';
    // Download links come with the body; until then the names alone.
    const atts = (w.Attachments || []).filter(Boolean);
    $('mail-attachments').replaceChildren(...atts.map((a) => el('li', {}, a.URL
      ? el('a', {href: a.URL, download: a.Name || 'attachment', rel: 'noopener noreferrer', class: 'mail-att'},
        icon(CLIP), el('span', {class: 'att-name'}, a.Name || 'attachment'), el('span', {class: 'att-size'}, formatSize(a.Size)))
      : el('span', {class: 'mail-att pending'},
        icon(CLIP), el('span', {class: 'att-name'}, a.Name || 'attachment'), el('span', {class: 'att-size'}, formatSize(a.Size))))));
    $('mail-attachments').hidden = !atts.length;
    const msg = $('mail-message');
    msg.querySelector('[data-act=star]').textContent = e.Starred ? 'Unstar' : 'Star';
    msg.querySelector('[data-act=star]').setAttribute('aria-pressed', String(!!e.Starred));
    msg.querySelector('[data-act=unread]').textContent = e.Unread ? 'Mark read' : 'Mark unread';
    msg.querySelector('[data-act=delete]').textContent = e.Deleted ? 'Restore' : 'Delete';
    const html = !!w.HTML && !this.plain;
    $('mail-plain-btn').hidden = !w.HTML;
    $('mail-plain-btn').textContent = this.plain ? 'Show formatted' : 'Show plain text';
    let state = 'body';
    if (!kept) {
      if (this.bodyErrors.has(e.ID)) state = 'error';
      else if (!this.chat.loggedIn && !this.fetching.has(e.ID)) state = 'offline';
      else state = 'loading';
    }
    $('mail-content').setAttribute('aria-busy', String(state === 'loading'));
    // The body is rebuilt only when it changes: a flag must not reload the frame.
    const key = `${e.ID}:${state}:${html}:${kept ? kept.M_time : ''}`;
    if (key === this.shownKey) return;
    this.shownKey = key;
    let content;
    if (state === 'body') content = html ? this.htmlFrame(w) : el('div', {class: 'mail-text'}, textOf(w));
    else if (state === 'loading') content = el('p', {class: 'mail-loading', role: 'status'}, 'Loading the message…');
    else if (state === 'offline') {
      content = el('p', {class: 'mail-unfetched', role: 'status'},
        'This e-mail has not been downloaded yet. It loads when you are back online.');
    } else content = el('p', {class: 'mail-unfetched', role: 'alert'}, this.bodyErrors.get(e.ID));
    $('mail-content').replaceChildren(content);
  }

  /** htmlFrame shows sanitised HTML where it cannot run or load anything: a sandbox without
   * scripts or our origin, a CSP of its own, links opening outside. */
  htmlFrame(e) {
    const frame = el('iframe', {
      class: 'mail-html', sandbox: FRAME_SANDBOX, referrerpolicy: 'no-referrer',
      title: `Message: ${e.Subject || '(no subject)'}`,
    });
    frame.addEventListener('load', () => (frame.dataset.loaded = 'true'), {once: true});
    const doc = (body) => `<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="${FRAME_CSP}">` +
      `<meta charset="utf-8"><base target="_blank"></head><body>${body}</body></html>`;
    frame.srcdoc = doc(e.HTML);
    const key = this.shownKey;
    inlineImages(e).then((body) => {
      if (body !== e.HTML && this.shownKey === key && frame.isConnected) frame.srcdoc = doc(body);
    });
    return frame;
  }

  async act(what) {
    const e = this.emails.get(this.openId);
    if (!e) return;
    switch (what) {
      case 'reply':
      case 'replyAll': {
        const w = await this.wholeOrSay(e);
        if (w) this.reply(w, what === 'replyAll');
        break;
      }
      case 'forward': {
        const w = await this.wholeOrSay(e);
        if (w) this.forward(w);
        break;
      }
      case 'unread':
        if (await this.setFlag(e, 'MarkEmailUnread', {Unread: !e.Unread}) && !e.Unread) this.closeMessage({focus: true});
        break;
      case 'star':
        await this.setFlag(e, 'MarkEmailStarred', {Starred: !e.Starred});
        break;
      case 'delete':
        if (await this.setFlag(e, 'MarkEmailDeleted', {Deleted: !e.Deleted})) {
          this.toast(e.Deleted ? 'E-mail restored.' : 'Moved to the Trash.', 'info');
          this.closeMessage({focus: true});
        }
        break;
      default:
        break;
    }
  }

  /** setFlag sends one flag command and takes the e-mail it answers. */
  async setFlag(e, cmd, fields) {
    try {
      this.chat.requireOnline(cmd);
      const rep = await this.chat.request(cmd, {ID: e.ID, ...fields});
      if (rep && rep.Email) this.apply(rep.Email, true);
      this.render();
      return true;
    } catch (err) {
      this.toast(describeError(err, cmd));
      return false;
    }
  }

  async emptyTrash() {
    const n = this.inFolder().length;
    if (!(await confirmDialog(`Delete the ${n} e-mail${n === 1 ? '' : 's'} in the Trash for good?`, 'Empty trash'))) return;
    const gone = [...this.emails.values()].filter((e) => !e.Removed && e.Deleted);
    try {
      this.chat.requireOnline('RemoveDeletedEmails');
      await this.chat.request('RemoveDeletedEmails', {});
    } catch (err) {
      this.toast(describeError(err, 'RemoveDeletedEmails'));
      return;
    }
    // The server pushes the removals to the other sessions only; here they are known now (the
    // next sync brings the markers with their M_time).
    for (const e of gone) this.apply({ID: e.ID, M_time: e.M_time, Removed: true}, true);
    this.toast('The Trash is empty.', 'info');
    this.render();
    if (this.quota.full) this.sync(); // the mailbox may have room again
    $('mail-folders').querySelector('[data-folder=trash]').focus();
  }

  // Answering and forwarding (the composer is mailcompose.js)

  reply(e, all) {
    const mineSent = e.Folder === 'sent';
    const to = mineSent ? [...(e.To || [])] : [e.From].filter(Boolean);
    let cc = [];
    if (all) {
      const skip = new Set([...to, this.address].map((a) => a.toLowerCase()));
      cc = [...(e.To || []), ...(e.Cc || [])].filter((a) => {
        const k = a.toLowerCase();
        if (skip.has(k) || [...skip].some((s) => k.includes(`<${s}>`))) return false;
        skip.add(k);
        return true;
      });
    }
    const d = parseWireTime(e.Date);
    const intro = `On ${d ? fullTime(d) : 'an earlier day'}, ${sender(e)} wrote:`;
    this.composer.compose({
      to: to.join(', '), cc: cc.join(', '), subject: prefixed('Re', e.Subject),
      text: `\n\n${intro}\n${quote(textOf(e))}\n`, inReplyTo: e.ID, caret: 0,
    });
  }

  forward(e) {
    const d = parseWireTime(e.Date);
    const head = ['---------- Forwarded message ----------', `From: ${sender(e)}`, `Date: ${d ? fullTime(d) : ''}`,
      `Subject: ${e.Subject || ''}`, `To: ${(e.To || []).join(', ')}`];
    if (e.Cc && e.Cc.length) head.push(`Cc: ${e.Cc.join(', ')}`);
    this.composer.compose({subject: prefixed('Fwd', e.Subject), text: `\n\n${head.join('\n')}\n\n${textOf(e)}`, caret: 0});
  }

  async editDraft(draft) {
    const e = await this.wholeOrSay(draft);
    if (!e) return;
    // A draft keeps the Message-ID it answers; the command wants the answered e-mail's ID.
    const orig = e.InReplyTo ? [...this.emails.values()].find((o) => !o.Removed && o.MessageID === e.InReplyTo) : null;
    this.composer.compose({
      id: e.ID, to: (e.To || []).join(', '), cc: (e.Cc || []).join(', '), subject: e.Subject || '',
      text: e.Text || '', inReplyTo: orig ? orig.ID : 0,
    });
  }
}
