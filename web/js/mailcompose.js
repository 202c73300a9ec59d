// The mail composer and invitations (DESIGN §3.2 "Mail"). The composer is a dialog whose draft
// is saved a second after the last key (AddNewDraft: the first save creates the draft, the next
// ones update it by its ID) and removed by the server when it is sent (SendEmailMessage with the
// draft's ID, and InReplyTo for an answer). Invitations go by e-mail, or by SMS through the
// phone's carrier (SendEmailInvite). mail.js opens the composer with what to start from.

import {describeError} from './chat.js';
import {submitting} from './dialogs.js';

const $ = (id) => document.getElementById(id);

const SAVE_DELAY_MS = 1000; // drafts are saved this long after the last key

/** splitAddresses reads a comma-separated list of addresses. */
function splitAddresses(text) {
  return text.split(/[,;\n]/).map((a) => a.trim()).filter(Boolean);
}

export class Composer {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {function(string)} opts.announce
   * @param {function(object)} opts.onEmail  an e-mail the server answered with (a draft, a sent
   *   copy), whole: its summary with the text that was sent
   */
  constructor(chat, {toast, announce, onEmail}) {
    this.chat = chat;
    this.toast = toast;
    this.announce = announce;
    this.onEmail = onEmail;
    this.draft = null; // the e-mail being composed: {id, inReplyTo, fields, dirty, timer, saving, again, sent}

    const form = $('compose-form');
    form.addEventListener('input', () => this.onComposeInput());
    form.addEventListener('submit', (e) => this.onSend(e));
    $('compose-dialog').addEventListener('close', () => this.onComposeClose());
    $('mail-invite-btn').addEventListener('click', () => this.openInvite());
    $('friends-invite-btn').addEventListener('click', () => this.openInvite());
    $('invite-form').addEventListener('submit', (e) => this.onInvite(e));
    for (const r of document.querySelectorAll('input[name=invite-kind]')) {
      r.addEventListener('change', () => this.renderInviteKind());
    }
    // The invitation's carriers are the settings' list (one list to keep up to date).
    $('invite-carrier').replaceChildren(...[...$('phone-carrier').options].map((o) => o.cloneNode(true)));
  }

  /** compose opens the composer: empty, a reply, a forward, or a draft (id). */
  compose({id = 0, to = '', cc = '', subject = '', text = '', inReplyTo = 0, caret = -1}) {
    const dialog = $('compose-dialog');
    if (id && dialog.open && this.draft && this.draft.id === id) return; // that draft is open already
    if (dialog.open) {
      // Start anew: keep what was being written. The 'close' event comes later, when the
      // dialog is open again, and must not touch the new draft (onComposeClose).
      const old = this.draft;
      this.draft = null;
      dialog.close();
      if (old && old.dirty && !old.sent) this.saveDraft(old);
    }
    this.draft = {id, inReplyTo, fields: null, dirty: false, timer: 0, saving: null, again: false};
    $('compose-to').value = to;
    $('compose-cc').value = cc;
    $('compose-subject').value = subject;
    $('compose-text').value = text;
    $('compose-title').textContent = id ? 'Draft' : inReplyTo ? 'Reply' : subject.startsWith('Fwd:') ? 'Forward' : 'New e-mail';
    $('compose-state').textContent = id ? 'Saved as a draft.' : '';
    $('compose-form').querySelector('.form-error').textContent = '';
    dialog.showModal();
    if (!to) {
      $('compose-to').focus();
    } else {
      const area = $('compose-text');
      area.focus();
      if (caret >= 0) area.setSelectionRange(caret, caret);
      area.scrollTop = 0;
    }
  }

  composeFields() {
    return {
      To: splitAddresses($('compose-to').value), Cc: splitAddresses($('compose-cc').value),
      Subject: $('compose-subject').value.replace(/[\r\n]+/g, ' '), Text: $('compose-text').value,
    };
  }

  onComposeInput() {
    const d = this.draft;
    if (!d) return;
    d.fields = this.composeFields();
    d.dirty = true;
    $('compose-state').textContent = '';
    clearTimeout(d.timer);
    d.timer = setTimeout(() => this.saveDraft(d), SAVE_DELAY_MS);
  }

  /** saveDraft writes the draft (AddNewDraft: the first save creates it, the next update it by
   * its ID). One save at a time, so that a draft is never created twice. */
  saveDraft(d) {
    clearTimeout(d.timer);
    if (d.saving) {
      d.again = true;
      return d.saving;
    }
    if (!d.dirty || d.sent) return Promise.resolve();
    d.dirty = false;
    const fields = {...d.fields};
    if (d.id) fields.ID = d.id;
    if (d.inReplyTo) fields.InReplyTo = d.inReplyTo;
    const mine = () => this.draft === d;
    if (mine()) $('compose-state').textContent = 'Saving…';
    d.saving = (async () => {
      try {
        const rep = await this.chat.request('AddNewDraft', fields);
        if (rep && rep.Email) {
          d.id = rep.Email.ID;
          // The answer is the draft's summary; its body is what was saved.
          this.onEmail({...rep.Email, Text: fields.Text, To: fields.To, Cc: fields.Cc});
        }
        if (mine()) $('compose-state').textContent = 'Draft saved.';
      } catch (err) {
        d.dirty = true;
        if (mine()) $('compose-state').textContent = describeError(err, 'AddNewDraft');
        else this.toast(describeError(err, 'AddNewDraft'));
      } finally {
        d.saving = null;
      }
      if (d.again) {
        d.again = false;
        if (d.dirty && !d.sent) await this.saveDraft(d);
      }
    })();
    return d.saving;
  }

  onComposeClose() {
    if ($('compose-dialog').open) return; // compose() reopened it and kept the old draft itself
    const d = this.draft;
    this.draft = null;
    if (d && d.dirty && !d.sent) {
      this.saveDraft(d);
      this.toast('Kept in Drafts.', 'info');
    }
  }

  async onSend(ev) {
    ev.preventDefault();
    const d = this.draft;
    if (!d) return;
    const form = ev.target;
    const fields = this.composeFields();
    if (!fields.To.length && !fields.Cc.length) {
      form.querySelector('.form-error').textContent = 'Add at least one address to send to.';
      $('compose-to').focus();
      return;
    }
    clearTimeout(d.timer);
    if (d.saving) await d.saving; // its ID is the draft to remove
    const ok = await submitting(form, async () => {
      try {
        this.chat.requireOnline('SendEmailMessage');
        const req = {...fields};
        if (d.id) req.ID = d.id;
        if (d.inReplyTo) req.InReplyTo = d.inReplyTo;
        const rep = await this.chat.request('SendEmailMessage', req);
        d.sent = true;
        if (d.id) this.onEmail({ID: d.id, M_time: rep.Email ? rep.Email.M_time : '', Removed: true});
        if (rep && rep.Email) this.onEmail({...rep.Email, Text: req.Text, To: req.To, Cc: req.Cc});
      } catch (err) {
        err.cmd = err.cmd || 'SendEmailMessage';
        throw err;
      }
    });
    if (!ok) return;
    $('compose-dialog').close();
    this.toast('E-mail sent.', 'info');
    this.announce('E-mail sent.');
  }

  // Invitations

  openInvite() {
    const form = $('invite-form');
    form.reset();
    form.querySelector('.form-error').textContent = '';
    this.renderInviteKind();
    $('invite-dialog').showModal();
    $('invite-email').focus();
  }

  inviteKind() {
    const r = document.querySelector('input[name=invite-kind]:checked');
    return r ? r.value : 'email';
  }

  renderInviteKind() {
    const phone = this.inviteKind() === 'phone';
    $('invite-email-fields').hidden = phone;
    $('invite-phone-fields').hidden = !phone;
  }

  async onInvite(ev) {
    ev.preventDefault();
    const form = ev.target;
    const error = form.querySelector('.form-error');
    const message = $('invite-message').value.trim();
    let fields;
    let to;
    if (this.inviteKind() === 'phone') {
      fields = {phone: $('invite-phone').value.trim(), carrier: $('invite-carrier').value};
      to = fields.phone;
      if (!fields.phone || !fields.carrier) {
        error.textContent = 'Type the phone number and pick its carrier.';
        (fields.phone ? $('invite-carrier') : $('invite-phone')).focus();
        return;
      }
    } else {
      fields = {email: $('invite-email').value.trim()};
      to = fields.email;
      if (!to.includes('@')) {
        error.textContent = 'Type the e-mail address to invite.';
        $('invite-email').focus();
        return;
      }
    }
    if (message) fields.Message = message;
    const ok = await submitting(form, async () => {
      try {
        this.chat.requireOnline('SendEmailInvite');
        await this.chat.request('SendEmailInvite', fields);
      } catch (err) {
        err.cmd = err.cmd || 'SendEmailInvite';
        throw err;
      }
    });
    if (!ok) return;
    $('invite-dialog').close();
    this.toast(`Invitation sent to ${to}.`, 'info');
  }
}
