// Scheduled messages: the composer's "Send later" dialog (AddScheduledMessage) and, above the
// composer, the open conversation's messages waiting to be sent, each with Cancel
// (RemoveScheduledMessage). The list is the chat's (chat.js keeps it from the user view, our
// own changes, and the deliveries it sees); a delivered message shows as any other message.

import {describeError} from './chat.js';
import {convoTitle} from './convolist.js';
import {submitting} from './dialogs.js';
import {el, parseWireTime, whenLabel, fullTime, localInputValue} from './util.js';

const $ = (id) => document.getElementById(id);

const YEAR_MS = 365 * 24 * 3600 * 1000; // the server takes times at most a year ahead

export class Scheduler {
  /**
   * @param {import('./chat.js').Chat} chat
   * @param {object} opts
   * @param {function(string, string=)} opts.toast
   * @param {function(string)} opts.announce
   * @param {function(): string} opts.draft       the composer's text
   * @param {function(string, string)} opts.onScheduled  (cid, content): a message was scheduled
   */
  constructor(chat, {toast, announce, draft, onScheduled}) {
    this.chat = chat;
    this.toast = toast;
    this.announce = announce;
    this.draft = draft;
    this.onScheduled = onScheduled;
    this.cid = null;
    this.expanded = true;
    this.timer = 0;
    this.dialog = $('schedule-dialog');

    chat.addEventListener('scheduled', () => this.render());
    $('schedule-btn').addEventListener('click', () => this.open());
    $('schedule-form').addEventListener('submit', (e) => this.onSchedule(e));
    $('scheduled-toggle').addEventListener('click', () => {
      this.expanded = !this.expanded;
      this.render();
    });
    for (const b of this.dialog.querySelectorAll('.quick-times button')) {
      b.addEventListener('click', () => {
        const d = quickTime(b.dataset);
        if (!d) return;
        $('schedule-when').value = localInputValue(d);
        this.dialog.querySelector('.form-error').textContent = '';
      });
    }
  }

  /** show follows the conversation on screen (null for none). */
  show(cid) {
    this.cid = cid;
    this.render();
  }

  // The list above the composer

  render() {
    clearTimeout(this.timer);
    const items = this.cid ? this.chat.scheduledIn(this.cid) : [];
    const section = $('scheduled');
    section.hidden = items.length === 0;
    if (!items.length) return;
    const n = items.length;
    $('scheduled-count').textContent = `${n} scheduled message${n > 1 ? 's' : ''}`;
    $('scheduled-toggle').setAttribute('aria-expanded', String(this.expanded));
    const list = $('scheduled-list');
    list.hidden = !this.expanded;
    const now = new Date();
    const focused = list.contains(document.activeElement) ? document.activeElement.closest('li') : null;
    const focusedIndex = focused ? [...list.children].indexOf(focused) : -1;
    list.replaceChildren(...items.map((s) => {
      const d = parseWireTime(s.Time);
      const due = d && d <= now;
      const when = due ? 'Sending now' : whenLabel(d, now);
      const text = s.Content.replace(/\s+/g, ' ').trim();
      return el('li', {class: 'scheduled-item', dataset: {id: String(s.ID)}},
        el('time', {datetime: s.Time, title: fullTime(d)}, when),
        el('span', {class: 'scheduled-text', title: s.Content}, text),
        el('button', {
          type: 'button', class: 'ghost small',
          'aria-label': `Cancel the message for ${due ? 'now' : when}: ${text.slice(0, 80)}`,
          onclick: (e) => this.cancel(s, e.currentTarget),
        }, 'Cancel'));
    }));
    if (focusedIndex >= 0) {
      // The row that had the focus is gone (cancelled, sent): the next one, or the composer.
      const next = list.children[Math.min(focusedIndex, list.children.length - 1)];
      (next ? next.querySelector('button') : $('composer-input')).focus();
    }
    // "Today" becomes "Yesterday" at midnight, and a time that passes is due: look again at the
    // next minute.
    this.timer = setTimeout(() => this.render(), 60_000 - (Date.now() % 60_000) + 50);
  }

  async cancel(s, btn) {
    btn.disabled = true;
    const section = $('scheduled');
    const hadFocus = section.contains(document.activeElement);
    try {
      await this.chat.unschedule(s.ID);
      this.toast('Scheduled message cancelled.', 'info');
      this.announce('Scheduled message cancelled.');
    } catch (err) {
      btn.disabled = false;
      this.toast(describeError(err, 'RemoveScheduledMessage'));
    }
    if (hadFocus && section.hidden) $('composer-input').focus();
  }

  // The dialog

  open() {
    const cid = this.chat.openCid;
    if (!cid) return;
    const form = $('schedule-form');
    form.querySelector('.form-error').textContent = '';
    const c = this.chat.store.convo(cid);
    $('schedule-where').textContent = c ? `In ${convoTitle(c, this.chat.me)}` : '';
    $('schedule-text').value = this.draft();
    $('schedule-when').value = '';
    $('schedule-when').min = localInputValue(new Date());
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    $('schedule-zone').textContent = zone ? ` (${zone})` : '';
    // "This evening" only while it is still to come.
    const evening = form.querySelector('[data-at-hour]');
    evening.hidden = !quickTime(evening.dataset);
    this.dialog.showModal();
    ($('schedule-text').value.trim() ? $('schedule-when') : $('schedule-text')).focus();
  }

  async onSchedule(e) {
    e.preventDefault();
    const form = e.target;
    const error = form.querySelector('.form-error');
    const cid = this.chat.openCid;
    const content = $('schedule-text').value;
    const value = $('schedule-when').value;
    const when = value ? new Date(value) : null; // local time, as the field shows it
    let problem = '';
    let field = null;
    if (!content.trim()) [problem, field] = ['Write the message to send.', $('schedule-text')];
    else if (!when || Number.isNaN(when.getTime())) [problem, field] = ['Pick the day and time to send it.', $('schedule-when')];
    else if (when <= new Date()) [problem, field] = ['Pick a time in the future.', $('schedule-when')];
    else if (when - Date.now() > YEAR_MS) [problem, field] = ['Pick a time at most a year ahead.', $('schedule-when')];
    if (problem) {
      error.textContent = problem;
      field.focus();
      return;
    }
    const ok = await submitting(form, async () => {
      try {
        await this.chat.schedule(cid, content, when);
      } catch (err) {
        err.cmd = err.cmd || 'AddScheduledMessage';
        throw err;
      }
    });
    if (!ok) return;
    this.dialog.close();
    this.expanded = true;
    this.render();
    this.onScheduled(cid, content);
    const said = `Scheduled for ${whenLabel(when)}.`;
    this.toast(said, 'info');
    this.announce(said);
  }
}

/** quickTime is the time a quick choice stands for: in N minutes, today at an hour (if still
 * an hour away), or tomorrow at an hour. */
function quickTime(data) {
  const now = new Date();
  if (data.inMinutes) return new Date(now.getTime() + Number(data.inMinutes) * 60_000);
  if (data.atHour) {
    const d = new Date(now);
    d.setHours(Number(data.atHour), 0, 0, 0);
    return d - now >= 3600_000 ? d : null;
  }
  if (data.tomorrowHour) {
    const d = new Date(now);
    d.setDate(d.getDate() + 1);
    d.setHours(Number(data.tomorrowHour), 0, 0, 0);
    return d;
  }
  return null;
}
