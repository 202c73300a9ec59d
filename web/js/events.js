// Timeline events: the server stores renames, additions, removals and leaving as messages of
// kind "event" whose content is JSON (DESIGN §3.2). They are shown as centred system lines,
// never as someone's bubble, and never count as unread.

import {sameUser, listNames} from './util.js';

/** isEvent tells a timeline event from a message. */
export function isEvent(r) {
  return !!r && r.kind === 'event';
}

/** eventText words an event for me ("You" for myself). */
export function eventText(r, me) {
  const who = (n) => (sameUser(n, me) ? 'You' : n);
  const whom = (n) => (sameUser(n, me) ? 'you' : n);
  let ev = {};
  try {
    ev = JSON.parse(r.content) || {};
  } catch {
    // An event this client cannot read is still an event, not a message.
  }
  const actor = who(r.f_username || 'Someone');
  const users = Array.isArray(ev.users) ? ev.users.filter((u) => typeof u === 'string').map(whom) : [];
  switch (ev.type) {
    case 'rename':
      return `${actor} renamed the conversation to “${String(ev.name || '')}”`;
    case 'add':
      return `${actor} added ${listNames(users)}`;
    case 'remove':
      return `${actor} removed ${listNames(users)}`;
    case 'leave':
      return `${actor} left`;
    default:
      return `${actor} changed the conversation`;
  }
}
