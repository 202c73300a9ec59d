// Files (DESIGN §3.2 Files): attaching files to a conversation (button or drag and drop, with
// upload progress), showing file messages (images inline as thumbnails, other files as download
// chips), profile pictures, and the storage quota in the settings.
//
// A file message is a message whose content is {"file":{url,name,size,type,thumb}}; it is shown
// as a file only when it parses and url is exactly /files/<32 hex digits>, else as text like any
// message. Names and sizes are put in as text. Conversation files are fetched with ?t=<token>
// (GetFileToken), so that <img src> works without cookies. A token is good for an hour and only
// while this session lasts (a password change ends it): it is renewed every 20 minutes, at each
// login and after a password change, and an image that fails with an older token tries again.
//
// Thumbnails are made by the server after the upload, and not always (a busy server, an image too
// costly to decode): a picture whose thumbnail is not there is shown as a file ("no preview"),
// and replaced by the picture when the server's FileThumb push says it has been made.

import {el, icon, visibleText} from './util.js';

const $ = (id) => document.getElementById(id);

export const FILE_URL_RE = /^\/files\/[0-9a-f]{32}$/;
const RASTER = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/bmp']);
// A sheet of paper with a folded corner.
const DOC_ICON = 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zm0 2.5L17.5 8H14zM6 20V4h6v6h6v10z';
// A landscape in a frame.
const PIC_ICON = 'M19 3H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2zm0 16H5V5h14zm-5.04-6.71-2.75 3.54-1.96-2.36L6.5 17h11z';
const TOKEN_REFRESH_MS = 20 * 60 * 1000; // tokens last an hour: refresh well before

let current = null; // the page's Files, for the render helpers below

/** parseFileMessage returns the file a message's content describes, or null. */
export function parseFileMessage(content) {
  if (typeof content !== 'string' || !content.startsWith('{"file":')) return null;
  let v;
  try {
    v = JSON.parse(content);
  } catch {
    return null;
  }
  const f = v && typeof v === 'object' && v.file;
  if (!f || typeof f !== 'object' || typeof f.url !== 'string' || !FILE_URL_RE.test(f.url)) return null;
  return {
    url: f.url,
    // A file message is written by a client: its name may hide characters the server refuses in
    // the names of uploads.
    name: (typeof f.name === 'string' && visibleText(f.name)) || 'file',
    size: Number.isFinite(f.size) && f.size >= 0 ? f.size : 0,
    type: typeof f.type === 'string' ? f.type : '',
    thumb: f.thumb === true,
  };
}

/** fileContent is the message content for an uploaded file. */
export function fileContent(f) {
  return JSON.stringify({file: {url: f.url, name: f.name, size: f.size, type: f.type, thumb: !!f.thumb}});
}

/** formatSize writes a byte count for people. */
export function formatSize(n) {
  if (!(n >= 0)) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** filePreview is the one-line text for a file message (the conversation list), or null. */
export function filePreview(content) {
  const f = parseFileMessage(content);
  if (!f) return null;
  return `${RASTER.has(f.type) ? 'Picture' : 'File'}: ${f.name}`;
}

/** fileView builds the element for a file message, or null when content is not one. */
export function fileView(content) {
  const f = parseFileMessage(content);
  if (!f) return null;
  const box = el('div', {class: 'file-msg'});
  if (RASTER.has(f.type) && f.thumb) showPicture(box, f);
  else box.append(fileChip(f));
  return box;
}

/** fileChip is a file as a link with its name and size: a download, or a picture without a
 * preview (opened full size in a new tab). */
function fileChip(f) {
  const picture = RASTER.has(f.type);
  const chip = el('a', {
    class: picture ? 'file-chip no-preview' : 'file-chip',
    download: picture ? null : f.name,
    target: picture ? '_blank' : null,
    rel: 'noopener noreferrer',
    dataset: {fileUrl: f.url},
  },
  icon(picture ? PIC_ICON : DOC_ICON, 'ico file-icon'),
  picture ? el('span', {class: 'visually-hidden'}, 'Picture: ') : null,
  el('span', {class: 'file-name', dir: 'auto'}, f.name),
  el('span', {class: 'file-size'}, formatSize(f.size)),
  picture ? el('span', {class: 'file-note'}, 'no preview') : null);
  withToken((t) => { chip.href = `${f.url}?t=${encodeURIComponent(t)}`; });
  return chip;
}

/** showPicture puts a picture's thumbnail in box, linking to the full picture; when there is no
 * thumbnail (yet), the picture as a file, until a FileThumb push brings one. */
function showPicture(box, f) {
  const img = el('img', {class: 'file-thumb', alt: f.name, loading: 'lazy', decoding: 'async'});
  const link = el('a', {
    class: 'file-image', target: '_blank', rel: 'noopener noreferrer', dataset: {fileUrl: f.url},
    title: `${f.name} (${formatSize(f.size)}), open full size`,
  }, img);
  let used = '';
  const load = (t) => {
    used = t;
    img.src = `${f.url}/thumb?t=${encodeURIComponent(t)}`;
    link.href = `${f.url}?t=${encodeURIComponent(t)}`;
  };
  img.addEventListener('error', () => {
    if (current && current.token && current.token !== used) {
      load(current.token); // the token it had expired or was revoked meanwhile
      return;
    }
    const focused = box.contains(document.activeElement);
    box.replaceChildren(fileChip(f));
    if (focused) box.querySelector('a').focus();
    if (current) current.awaitThumb(f, box);
  });
  withToken(load);
  const focused = box.contains(document.activeElement);
  box.replaceChildren(link);
  if (focused) link.focus();
}

/** withToken calls fn with a file token now, or once one has arrived. */
function withToken(fn) {
  if (!current) return;
  if (current.token) fn(current.token);
  else current.waiting.push(fn);
}

/** avatarPic puts username's profile picture into an avatar element, when there is one. */
export function avatarPic(node, username) {
  if (current && username) current.avatar(node, username);
}

export class Files {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {function(): string|null} opts.openCid  the conversation on screen
   */
  constructor(chat, {toast}) {
    current = this;
    this.chat = chat;
    this.toast = toast;
    this.token = '';
    this.waiting = [];
    this.pics = new Map(); // username (lower case) → profile file URL, '' for none
    this.asked = new Set();

    this.thumbWaits = new Map(); // file URL → [{f, box}] shown without their thumbnail

    chat.addEventListener('user', (e) => this.onView(e.detail.view));
    // A new login or a password change is a new session: the old token no longer works.
    chat.addEventListener('loggedin', () => this.refreshToken());
    chat.addEventListener('session', () => this.refreshToken());
    chat.conn.addEventListener('push', (e) => {
      const p = e.detail;
      if (p && p.cmd === 'FileThumb' && typeof p.fileURL === 'string') this.onThumb(p.fileURL);
    });
    this.bindComposer();
    this.bindSettings();
  }

  // Tokens and profile pictures

  onView(view) {
    if (!view) return;
    this.rememberPic(view.Username, view.ProfilePic);
    for (const f of [view.Friends, view.IncomingPendingFriends, view.OutgoingPendingFriends].flat()) {
      if (f && typeof f.Username === 'string') this.rememberPic(f.Username, f.ProfilePic);
    }
    this.renderMe(view);
    this.renderSettings(view);
    if (!this.token && !this.fetching) this.refreshToken();
  }

  async refreshToken() {
    this.fetching = true;
    let ok = false;
    try {
      const rep = await this.chat.request('GetFileToken', {}, {background: true});
      if (rep && typeof rep.Token === 'string') {
        ok = true;
        this.token = rep.Token;
        const waiting = this.waiting;
        this.waiting = [];
        for (const fn of waiting) fn(this.token);
        // Links already shown get the new token (loaded images keep what they have).
        for (const a of document.querySelectorAll('a[data-file-url]')) {
          if (FILE_URL_RE.test(a.dataset.fileUrl)) a.href = `${a.dataset.fileUrl}?t=${encodeURIComponent(this.token)}`;
        }
      }
    } catch {
      // offline or logged out: try again below
    } finally {
      this.fetching = false;
    }
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refreshToken(), ok ? TOKEN_REFRESH_MS : 30_000);
  }

  /** awaitThumb remembers a picture shown without its thumbnail, for onThumb. */
  awaitThumb(f, box) {
    const list = (this.thumbWaits.get(f.url) || []).filter((w) => w.box.isConnected);
    list.push({f, box});
    this.thumbWaits.set(f.url, list);
  }

  /** onThumb shows the pictures of a file whose thumbnail has just been made. */
  onThumb(url) {
    const list = this.thumbWaits.get(url) || [];
    this.thumbWaits.delete(url);
    for (const {f, box} of list) {
      if (box.isConnected) showPicture(box, {...f, thumb: true});
    }
    // Forget the pictures whose messages are no longer on screen.
    for (const [u, l] of this.thumbWaits) {
      const live = l.filter((w) => w.box.isConnected);
      if (live.length) this.thumbWaits.set(u, live);
      else this.thumbWaits.delete(u);
    }
  }

  rememberPic(name, url) {
    if (typeof name !== 'string') return;
    const pic = typeof url === 'string' && FILE_URL_RE.test(url) ? url : '';
    const key = name.toLowerCase();
    const changed = this.pics.get(key) !== pic;
    this.pics.set(key, pic);
    if (changed) {
      for (const node of document.querySelectorAll(`[data-pic-of="${CSS.escape(key)}"]`)) this.paint(node, pic);
    }
  }

  avatar(node, username) {
    const key = username.toLowerCase();
    node.dataset.picOf = key;
    if (this.pics.has(key)) {
      this.paint(node, this.pics.get(key));
      return;
    }
    if (this.asked.has(key) || !this.chat.loggedIn) return;
    this.asked.add(key);
    this.chat.request('GetUserByUsername', {username}, {background: true}).then((u) => {
      this.rememberPic(username, u ? u.ProfilePic : '');
    });
  }

  /** paint shows a picture in an avatar, over its initials (which stay for a broken one). */
  paint(node, url) {
    const old = node.querySelector('img.avatar-pic');
    if (old) old.remove();
    if (!url) return;
    const img = el('img', {class: 'avatar-pic', src: url, alt: ''});
    img.addEventListener('error', () => img.remove(), {once: true});
    node.append(img);
  }

  renderMe(view) {
    const me = $('me-avatar');
    if (me) {
      me.dataset.picOf = (view.Username || '').toLowerCase();
      this.paint(me, this.pics.get(me.dataset.picOf) || '');
    }
  }

  // Attaching files

  bindComposer() {
    const input = $('attach-input');
    $('attach-btn').addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      const files = [...input.files];
      input.value = '';
      this.attach(files);
    });
    const zone = $('convo');
    let depth = 0;
    const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    zone.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth++;
      zone.classList.add('dropping');
    });
    zone.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    zone.addEventListener('dragleave', (e) => {
      if (!hasFiles(e)) return;
      if (--depth <= 0) {
        depth = 0;
        zone.classList.remove('dropping');
      }
    });
    zone.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      zone.classList.remove('dropping');
      this.attach([...e.dataTransfer.files]);
    });
  }

  attach(files) {
    const cid = this.chat.openCid;
    if (!cid || !files.length) return;
    for (const file of files) this.uploadToConvo(cid, file);
  }

  /** progressRow is an entry of the uploads list above the composer. */
  progressRow(name) {
    const bar = el('progress', {max: 100, value: 0, 'aria-label': `Uploading ${name}`});
    const status = el('span', {class: 'upload-status'}, 'Starting…');
    const row = el('li', {class: 'upload'}, el('span', {class: 'upload-name'}, name), bar, status);
    $('uploads').append(row);
    $('uploads').hidden = false;
    return {
      progress(done, total) {
        bar.value = total ? Math.round((100 * done) / total) : 0;
        status.textContent = `${formatSize(done)} of ${formatSize(total)}`;
      },
      fail(text) {
        row.classList.add('failed');
        bar.remove();
        status.textContent = text;
        row.append(el('button', {type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => this.done()}, '×'));
      },
      done() {
        row.remove();
        $('uploads').hidden = !$('uploads').children.length;
      },
    };
  }

  async uploadToConvo(cid, file) {
    const row = this.progressRow(file.name);
    try {
      const up = await this.upload(cid, file, (d, t) => row.progress(d, t));
      await this.chat.request('UpdateConvoFiles', {CID: cid, fileURL: up.url});
      this.chat.send(cid, fileContent(up));
      row.done();
    } catch (err) {
      row.fail(`Not sent: ${err.message}`);
    }
  }

  /** upload sends a file to the target the server gives and resolves to its description. */
  async upload(cid, file, onProgress = () => {}) {
    this.chat.requireOnline('GetS3PolicyData');
    const type = /^[\w!#$&^.+-]+\/[\w!#$&^.+-]+$/.test(file.type) ? file.type : 'application/octet-stream';
    // Invisible characters in a file's name (a zero-width space pasted in, say) would have the
    // server refuse the upload: the name goes without them.
    const name = visibleText(file.name) || 'file';
    const t = await this.chat.request('GetS3PolicyData', {CID: cid, Name: name, Size: file.size, ContentType: type});
    const res = await send(t, file, type, onProgress);
    return {
      url: t.FileURL, name, size: file.size,
      type: res && res.Type ? res.Type : type, thumb: !!(res && res.Thumb),
    };
  }

  // Settings: profile picture and storage

  bindSettings() {
    $('pic-file').addEventListener('change', () => this.onPicture());
    $('pic-remove').addEventListener('click', () => this.setPicture(''));
  }

  async onPicture() {
    const input = $('pic-file');
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    const form = $('pic-form');
    form.querySelector('.form-error').textContent = '';
    form.querySelector('.form-ok').textContent = 'Uploading…';
    try {
      if (!RASTER.has(file.type)) throw new Error('pick a picture (PNG, JPEG, GIF or WebP)');
      const up = await this.upload('profile', file, (d, t) => {
        form.querySelector('.form-ok').textContent = `Uploading… ${Math.round((100 * d) / (t || 1))}%`;
      });
      await this.setPicture(up.url);
    } catch (err) {
      form.querySelector('.form-ok').textContent = '';
      form.querySelector('.form-error').textContent = `Couldn't change your picture: ${err.message}`;
    }
  }

  async setPicture(url) {
    const form = $('pic-form');
    try {
      await this.chat.account('ChangeProfilePic', {ProfilePic: url});
      form.querySelector('.form-ok').textContent = url ? 'Profile picture saved.' : 'Profile picture removed.';
    } catch (err) {
      form.querySelector('.form-ok').textContent = '';
      form.querySelector('.form-error').textContent = `Couldn't change your picture: ${err.message}`;
    }
  }

  renderSettings(view) {
    const pic = typeof view.ProfilePic === 'string' && FILE_URL_RE.test(view.ProfilePic) ? view.ProfilePic : '';
    const preview = $('pic-preview');
    preview.dataset.picOf = (view.Username || '').toLowerCase();
    this.paint(preview, pic);
    $('pic-remove').hidden = !pic;
    const quota = Number(view.Quota) || 0;
    const used = Number(view.QuotaUsed) || 0;
    $('quota-meter').max = Math.max(quota, 1);
    $('quota-meter').value = Math.min(used, quota);
    $('quota-text').textContent = `${formatSize(used)} of ${formatSize(quota)} used`;
  }
}

/** send uploads file to an upload target: a PUT of the bytes to this server, or a form POST to
 * an S3 bucket under its policy. It reports progress and resolves to the server's answer. */
function send(t, file, type, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(t.Method === 'POST' ? 'POST' : 'PUT', t.URL);
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      if (xhr.status < 200 || xhr.status > 299) {
        reject(new Error((xhr.responseText || `upload failed (${xhr.status})`).trim().slice(0, 200)));
        return;
      }
      onProgress(file.size, file.size);
      try {
        resolve(xhr.responseText ? JSON.parse(xhr.responseText) : null);
      } catch {
        resolve(null); // S3 answers XML or nothing
      }
    });
    xhr.addEventListener('error', () => reject(new Error('the upload was interrupted')));
    xhr.addEventListener('abort', () => reject(new Error('the upload was cancelled')));
    if (t.Method === 'POST') {
      const form = new FormData();
      for (const [k, v] of Object.entries(t.Fields || {})) form.append(k, v);
      if (!('Content-Type' in (t.Fields || {}))) form.append('Content-Type', type);
      form.append('file', file);
      xhr.send(form);
    } else {
      xhr.send(file);
    }
  });
}

