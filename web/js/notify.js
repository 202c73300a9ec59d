// Notifications while the page is hidden: a message from someone else that arrives while the
// user cannot see pingedchat (another tab in front, the window minimised) shows as a system
// notification (title: who, and where; body: the text) with a short chime made with WebAudio.
// Off until the user turns it on in the settings; the browser's permission is asked for then,
// in that click, never on its own. The choice is this device's (localStorage).
//
// Notifications go through the service worker when there is one (sw.js shows them and sends a
// click back to this tab, which opens the conversation); otherwise the page's Notification.
//
// Push (DESIGN §5.2): turning notifications on also subscribes this browser to Web Push with the
// server's VAPID key (GetPushConfig) and registers the subscription (AddWebDev), so that messages
// reach it while no pingedchat page is open; sw.js shows those. Turning off unsubscribes
// (RemoveWebDev), and so does logging out (the next user of this browser must not get this
// one's pushes). Where the server or the browser has no push, notifications work as before,
// while a page is open, and the settings say so.

import {convoTitle} from './convolist.js';
import {sameUser} from './util.js';
import {botSummary} from './bots.js';
import {filePreview} from './files.js';

const $ = (id) => document.getElementById(id);

const PREFS_KEY = 'pingedchat.notify';
const BODY_MAX = 180; // characters of the message shown
export const OPEN_MESSAGE = 'pingedchat-open'; // sw.js → page: a notification was clicked

function readPrefs() {
  try {
    const p = JSON.parse(localStorage.getItem(PREFS_KEY) || 'null');
    return {enabled: !!(p && p.enabled), sound: !p || p.sound !== false};
  } catch {
    return {enabled: false, sound: true};
  }
}

export class Notifier {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string)} opts.openConvo  shows a conversation
   */
  constructor(chat, {openConvo}) {
    this.chat = chat;
    this.openConvo = openConvo;
    this.prefs = readPrefs();
    this.audio = null;

    chat.addEventListener('incoming', (e) => this.onIncoming(e.detail));
    chat.addEventListener('loggedin', () => this.refreshPush());
    // Back on the page: what the notifications said is in front of the user now.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.closeAll();
    });
    // A page may make sound only once the user has interacted with it: be ready from then on.
    const unlock = () => {
      if (this.active && this.prefs.sound) this.audioContext();
    };
    document.addEventListener('pointerdown', unlock, {capture: true, passive: true});
    document.addEventListener('keydown', unlock, {capture: true, passive: true});
    if ('serviceWorker' in navigator) {
      navigator.serviceWorker.addEventListener('message', (e) => {
        const d = e.data;
        if (d && d.type === OPEN_MESSAGE && typeof d.cid === 'string') this.openConvo(d.cid);
      });
    }

    $('notify-on').addEventListener('change', () => this.onToggle());
    $('notify-sound').addEventListener('change', () => this.onSound());
  }

  get supported() {
    return 'Notification' in window && window.isSecureContext;
  }

  /** active: turned on here, and the browser allows it. */
  get active() {
    return this.prefs.enabled && this.supported && Notification.permission === 'granted';
  }

  save() {
    localStorage.setItem(PREFS_KEY, JSON.stringify(this.prefs));
  }

  // The settings

  /** renderSettings shows the choice in the settings dialog (called as the dialog renders). */
  renderSettings() {
    const on = $('notify-on');
    const sound = $('notify-sound');
    const state = $('notify-state');
    const form = $('notify-form');
    const blocked = this.supported && Notification.permission === 'denied';
    on.checked = this.active;
    on.disabled = !this.supported;
    sound.checked = this.prefs.sound;
    sound.disabled = !this.active;
    state.textContent = this.active ? 'On' : blocked && this.prefs.enabled ? 'Blocked' : 'Off';
    state.dataset.state = this.active ? 'on' : 'off';
    const error = form.querySelector('.form-error');
    if (!this.supported) error.textContent = 'This browser cannot show notifications here (they need HTTPS).';
    else if (blocked && this.prefs.enabled) error.textContent = blockedText();
  }

  async onToggle() {
    const form = $('notify-form');
    const error = form.querySelector('.form-error');
    const ok = form.querySelector('.form-ok');
    error.textContent = '';
    ok.textContent = '';
    if (!$('notify-on').checked) {
      this.prefs.enabled = false;
      this.save();
      this.closeAll();
      this.disablePush();
      this.renderSettings();
      ok.textContent = 'Notifications off.';
      return;
    }
    // This is the user's click: the one moment a page may ask for the permission, and start
    // its sound.
    if (this.prefs.sound) this.audioContext();
    let permission = Notification.permission;
    if (permission === 'default') {
      try {
        permission = await Notification.requestPermission();
      } catch {
        permission = Notification.permission;
      }
    }
    if (permission !== 'granted') {
      this.prefs.enabled = false;
      this.save();
      this.renderSettings();
      error.textContent = permission === 'denied' ? blockedText() : 'Notifications were not allowed. Turn this on again to be asked again.';
      return;
    }
    this.prefs.enabled = true;
    this.save();
    this.renderSettings();
    ok.textContent = 'Notifications on: messages that arrive while pingedchat is out of sight will show.';
    await this.enablePush();
  }

  // Push while no page is open

  /** enablePush subscribes this browser to Web Push and tells the server (after the click). */
  async enablePush() {
    try {
      const cfg = await this.chat.request('GetPushConfig', {});
      const key = cfg && cfg.VAPIDPublicKey;
      if (!key) return this.setPush('none', 'This server sends no push notifications: they show while pingedchat is open.');
      if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
        return this.setPush('none', 'This browser has no push: notifications show while pingedchat is open.');
      }
      const reg = await navigator.serviceWorker.ready;
      let sub = await reg.pushManager.getSubscription();
      if (!sub) sub = await reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: b64urlBytes(key)});
      await this.chat.request('AddWebDev', {device: JSON.stringify(sub.toJSON())});
      this.setPush('on', 'Also when pingedchat is closed.');
    } catch (err) {
      this.setPush('failed', `Push is unavailable here (${err.message}): notifications show while pingedchat is open.`);
    }
  }

  /** refreshPush tells the server again about this browser's subscription, if it has one (at
   * each login: the server may have dropped it, and browsers renew subscriptions). */
  async refreshPush() {
    if (!this.active || !('serviceWorker' in navigator)) return;
    try {
      const reg = await navigator.serviceWorker.getRegistration();
      const sub = reg && reg.pushManager ? await reg.pushManager.getSubscription() : null;
      if (!sub) return;
      await this.chat.request('AddWebDev', {device: JSON.stringify(sub.toJSON())});
      this.setPush('on', 'Also when pingedchat is closed.');
    } catch (err) {
      console.warn('pingedchat: could not renew the push subscription:', err.message);
    }
  }

  /** disablePush ends this browser's subscription, here and at the server. */
  async disablePush() {
    this.setPush('off', '');
    try {
      if (!('serviceWorker' in navigator)) return;
      const reg = await navigator.serviceWorker.getRegistration();
      const sub = reg && reg.pushManager ? await reg.pushManager.getSubscription() : null;
      if (!sub) return;
      await this.chat.request('RemoveWebDev', {device: sub.endpoint});
      await sub.unsubscribe();
    } catch (err) {
      console.warn('pingedchat: could not end the push subscription:', err.message);
    }
  }

  setPush(state, text) {
    const p = $('push-state');
    p.dataset.state = state;
    p.textContent = text;
  }

  onSound() {
    this.prefs.sound = $('notify-sound').checked;
    this.save();
    const ok = $('notify-form').querySelector('.form-ok');
    ok.textContent = this.prefs.sound ? 'Sound on.' : 'Sound off.';
    if (this.prefs.sound) this.chime(); // what it sounds like
  }

  // Notifying

  onIncoming({cid, record}) {
    if (!this.active || document.visibilityState !== 'hidden') return;
    if (!record || record.kind === 'event' || sameUser(record.f_username, this.chat.me)) return;
    const c = this.chat.store && this.chat.store.convo(cid);
    const where = c ? convoTitle(c, this.chat.me) : '';
    // A conversation named after the sender (just the two of us) says it once.
    const title = where && where !== record.f_username ? `${record.f_username} in ${where}` : record.f_username;
    let body = (filePreview(record.content) || botSummary(record)).replace(/\s+/g, ' ').trim();
    if (body.length > BODY_MAX) body = `${body.slice(0, BODY_MAX - 1)}…`;
    if (record.kind === 'autoreply') body = `Automatic reply: ${body}`;
    this.show(title, body, cid);
    if (this.prefs.sound) this.chime();
  }

  async show(title, body, cid) {
    const options = {
      body, tag: `pingedchat-${cid}`, renotify: true, silent: true, icon: 'icon.svg', data: {cid},
    };
    try {
      const reg = 'serviceWorker' in navigator ? await navigator.serviceWorker.getRegistration() : null;
      if (reg && reg.active) {
        await reg.showNotification(title, options);
        return;
      }
      const n = new Notification(title, options);
      n.onclick = () => {
        window.focus();
        this.openConvo(cid);
        n.close();
      };
    } catch (err) {
      console.warn('pingedchat: could not show a notification:', err.message);
    }
  }

  /** closeAll removes our notifications that are still showing. */
  async closeAll() {
    if (!('serviceWorker' in navigator)) return;
    try {
      const reg = await navigator.serviceWorker.getRegistration();
      if (!reg) return;
      for (const n of await reg.getNotifications()) if (n.tag.startsWith('pingedchat-')) n.close();
    } catch {
      // nothing to close
    }
  }

  // Sound

  audioContext() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!this.audio) this.audio = new Ctx();
    if (this.audio.state === 'suspended') this.audio.resume().catch(() => {});
    return this.audio;
  }

  /** chime plays two soft rising tones, about a third of a second. */
  chime() {
    const ctx = this.audioContext();
    if (!ctx) return;
    const t0 = ctx.currentTime + 0.01;
    for (const [i, freq] of [880, 1318.5].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const start = t0 + i * 0.12;
      osc.type = 'sine';
      osc.frequency.setValueAtTime(freq, start);
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.18, start + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + 0.22);
    }
  }
}

/** b64urlBytes decodes base64url (the VAPID key) for PushManager.subscribe. */
function b64urlBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

/** pushTarget is the conversation a clicked push notification opened this page for (sw.js
 * opens the app at #c=<CID>), or null; it clears the address's fragment. */
export function pushTarget() {
  const m = /^#c=([0-9a-f-]{36})$/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return m[1];
}

function blockedText() {
  return "Notifications are blocked for this site: allow them in your browser's site settings, then turn this on again.";
}
