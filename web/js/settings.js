// The settings dialog: profile picture and storage (files.js), notifications (notify.js: this
// device's), automatic reply, e-mail and phone (with their verification; the phone with its
// carrier, for the SMS bridge), password, blocked people, and deleting the account. Every change
// is one command that answers with the new user view (DESIGN §3.2); the server pushes the same
// view to the user's other sessions (UpdateUser), and the dialog follows either. Errors show in
// the section they belong to, in the server's words.

import {ConnectionError} from './conn.js';
import {submitting} from './dialogs.js';
import {el, sameUser} from './util.js';

const $ = (id) => document.getElementById(id);

const CODE_RE = /^[0-9]{6}$/;

/** saving runs a section's request like submitting, then says in the section that it worked:
 * what fn returns if that is text, else done. */
async function saving(form, fn, done) {
  const ok = form.querySelector('.form-ok');
  ok.textContent = '';
  let text = '';
  const worked = await submitting(form, async () => {
    const said = await fn();
    text = typeof said === 'string' ? said : done;
  });
  if (worked) ok.textContent = text;
  return worked;
}

/** refuse shows a problem found before asking the server. */
function refuse(form, text, field) {
  form.querySelector('.form-ok').textContent = '';
  form.querySelector('.form-error').textContent = text;
  if (field) field.focus();
}

/** show puts a value from the server into a field, unless the user has changed the field since
 * it was last filled (an UpdateUser from another device must not wipe what is being typed);
 * force: the field was just saved, so the server's form of it (e.g. a normalised number) wins. */
function show(input, value, force = false) {
  if (force || input.value === (input.dataset.shown || '')) input.value = value;
  input.dataset.shown = value;
}

export class Settings {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {import('./notify.js').Notifier} [opts.notifier]  this device's notifications
   */
  constructor(chat, {toast, notifier = null}) {
    this.chat = chat;
    this.toast = toast;
    this.notifier = notifier;
    this.dialog = $('settings-dialog');
    chat.addEventListener('user', () => {
      if (this.dialog.open) this.render();
    });
    chat.addEventListener('status', () => {
      if (this.dialog.open) this.renderNote();
    });

    $('auto-form').addEventListener('submit', (e) => this.onAutoreply(e));
    for (const kind of ['email', 'phone']) {
      $(`${kind}-form`).addEventListener('submit', (e) => this.onContact(e, kind));
      $(`${kind}-verify`).addEventListener('submit', (e) => this.onVerify(e, kind));
      $(`${kind}-verify`).querySelector('[data-send]').addEventListener('click', () => this.onSendCode(kind));
    }
    $('password-form').addEventListener('submit', (e) => this.onPassword(e));
    $('block-form').addEventListener('submit', (e) => this.onBlock(e));
    $('delete-btn').addEventListener('click', () => this.openDelete());
    $('delete-form').addEventListener('submit', (e) => this.onDelete(e));
  }

  open() {
    for (const form of this.dialog.querySelectorAll('form')) {
      form.querySelector('.form-error').textContent = '';
      const ok = form.querySelector('.form-ok');
      if (ok) ok.textContent = '';
    }
    for (const input of this.dialog.querySelectorAll('input, textarea')) {
      if (input.type === 'checkbox') continue; // notify.js shows those
      input.value = '';
      input.dataset.shown = '';
    }
    const carrier = this.view.Carrier || (this.chat.store ? this.chat.store.getMeta('carrier', '') || '' : '');
    $('phone-carrier').value = carrier;
    $('phone-carrier').dataset.shown = carrier;
    this.render();
    this.dialog.showModal();
    this.dialog.querySelector('.dialog-head [data-close]').focus();
  }

  get view() {
    return this.chat.view || {};
  }

  // Rendering

  render() {
    const v = this.view;
    this.renderNote();
    $('pw-user').value = this.chat.me;
    show($('auto-text'), v.AutoreplyMessage || '');
    const auto = !!v.AutoreplyMessage;
    $('auto-state').textContent = auto ? 'On' : 'Off';
    $('auto-state').dataset.state = auto ? 'on' : 'off';
    this.renderContact('email', v.Email || '', !!v.EmailVerified);
    this.renderContact('phone', v.Phone || '', !!v.PhoneVerified);
    if (v.Carrier) show($('phone-carrier'), v.Carrier);
    this.renderBlocked(Array.isArray(v.Blocked) ? v.Blocked : []);
    if (this.notifier) this.notifier.renderSettings();
  }

  renderNote() {
    const note = $('settings-note');
    let text = '';
    if (!this.chat.view) text = 'Your settings load once you are online.';
    else if (!this.chat.loggedIn) text = 'You are offline: changes can be saved once the connection is back.';
    note.textContent = text;
    note.hidden = !text;
  }

  /** renderContact shows an address or number, whether it is verified, and the verification
   * form while it is not. */
  renderContact(kind, value, verified) {
    show($(`${kind}-input`), value);
    const state = $(`${kind}-state`);
    state.textContent = value ? (verified ? 'Verified' : 'Not verified') : '';
    state.dataset.state = verified ? 'on' : 'off';
    const form = $(`${kind}-verify`);
    const wasHidden = form.hidden;
    form.hidden = !value || verified;
    if (form.hidden || wasHidden) {
      form.querySelector('.form-error').textContent = '';
      form.querySelector('.form-ok').textContent = '';
      $(`${kind}-code`).value = '';
    }
  }

  renderBlocked(names) {
    $('blocked-list').replaceChildren(...names.map((n) => el('li', {class: 'member'},
      el('span', {class: 'member-text'}, el('span', {class: 'member-name'}, n)),
      el('button', {
        type: 'button', class: 'ghost', 'aria-label': `Unblock ${n}`, onclick: () => this.onUnblock(n),
      }, 'Unblock'))));
    $('blocked-empty').hidden = names.length > 0;
  }

  // Changes

  onAutoreply(e) {
    e.preventDefault();
    const text = $('auto-text').value.trim();
    saving(e.target, async () => {
      const v = await this.chat.account('SaveAutoreplyMessage', {Message: text});
      show($('auto-text'), v.AutoreplyMessage || '', true);
    }, text ? 'Automatic reply on.' : 'Automatic reply off.');
  }

  onContact(e, kind) {
    e.preventDefault();
    const value = $(`${kind}-input`).value.trim();
    const cmd = kind === 'email' ? 'ChangeUserEmail' : 'ChangeUserPhone';
    const what = kind === 'email' ? 'E-mail address' : 'Phone number';
    const fields = {[kind]: value};
    // The carrier goes with the number: the SMS bridge texts through it (DESIGN §3.2).
    if (kind === 'phone' && value && $('phone-carrier').value) fields.carrier = $('phone-carrier').value;
    saving(e.target, async () => {
      const v = await this.chat.account(cmd, fields);
      const stored = (kind === 'email' ? v.Email : v.Phone) || '';
      show($(`${kind}-input`), stored, true);
      if (!stored) return `${what} removed.`;
      const verified = kind === 'email' ? v.EmailVerified : v.PhoneVerified;
      if (!verified) $(`${kind}-verify`).querySelector('[data-send]').focus();
      return verified ? `${what} saved.` : `${what} saved. Verify it with a code below.`;
    });
  }

  onSendCode(kind) {
    const form = $(`${kind}-verify`);
    const fields = {kind};
    if (kind === 'phone') {
      fields.carrier = $('phone-carrier').value;
      if (!fields.carrier) {
        refuse(form, 'Pick your carrier: the code is sent as a text message through it.', $('phone-carrier'));
        return;
      }
      if (this.chat.store) this.chat.store.setMeta('carrier', fields.carrier);
    }
    const to = kind === 'email' ? this.view.Email : this.view.Phone;
    saving(form, async () => {
      this.chat.requireOnline('SendVerificationCode');
      await this.chat.request('SendVerificationCode', fields);
      $(`${kind}-code`).focus();
    }, `Code sent to ${to}. It is valid for 15 minutes.`);
  }

  onVerify(e, kind) {
    e.preventDefault();
    const form = e.target;
    const code = $(`${kind}-code`).value.replace(/\s+/g, '');
    if (!CODE_RE.test(code)) {
      refuse(form, 'The code has six digits.', $(`${kind}-code`));
      return;
    }
    saving(form, async () => {
      await this.chat.account('VerifyContact', {kind, code});
      // The verification form is gone now: say it where the address is.
      $(`${kind}-form`).querySelector('.form-ok').textContent = kind === 'email' ? 'E-mail address verified.' : 'Phone number verified.';
    });
  }

  onPassword(e) {
    e.preventDefault();
    const form = e.target;
    const old = $('pw-old').value;
    const next = $('pw-new').value;
    if (!old) {
      refuse(form, 'Type your current password.', $('pw-old'));
      return;
    }
    if ([...next].length < 8) {
      refuse(form, 'A password has at least 8 characters.', $('pw-new'));
      return;
    }
    saving(form, async () => {
      await this.chat.account('ChangeUserPassword', {OldPassword: old, NewPassword: next});
      $('pw-old').value = '';
      $('pw-new').value = '';
    }, 'Password changed. Your other devices were logged out.');
  }

  onBlock(e) {
    e.preventDefault();
    const form = e.target;
    const name = $('block-input').value.trim().replace(/^@/, '');
    if (!name) {
      refuse(form, 'Type the username of the person to block.', $('block-input'));
      return;
    }
    if (sameUser(name, this.chat.me)) {
      refuse(form, 'You cannot block yourself.', $('block-input'));
      return;
    }
    saving(form, async () => {
      await this.chat.account('BlockUser', {Username: name});
      $('block-input').value = '';
      return `${name} is blocked.`;
    });
  }

  onUnblock(name) {
    saving($('block-form'), () => this.chat.account('UnblockUser', {Username: name}), `${name} is unblocked.`)
      .then((ok) => {
        if (ok) $('block-input').focus(); // the button that had the focus is gone
      });
  }

  // Deleting the account

  openDelete() {
    const form = $('delete-form');
    form.reset();
    form.querySelector('.form-error').textContent = '';
    $('delete-dialog').showModal();
    $('delete-password').focus();
  }

  async onDelete(e) {
    e.preventDefault();
    const form = e.target;
    const password = $('delete-password').value;
    if (!password) {
      form.querySelector('.form-error').textContent = 'Type your password to confirm.';
      $('delete-password').focus();
      return;
    }
    // On success the chat says 'deleted' and the app starts over at the login form.
    await submitting(form, async () => {
      try {
        await this.chat.deleteAccount(password);
      } catch (err) {
        if (err instanceof ConnectionError) err.cmd = err.cmd || 'DeleteUser';
        throw err;
      }
    });
  }
}
