/*
 * Timers and a clock that only move when a test says so: the `timers`
 * parameter of the client's modules (static/chat/util.js realTimers).
 */

export function fakeTimers(start = 1_000_000) {
  let now = start;
  let seq = 0;
  const tasks = new Map(); // id -> {at, fn, every}

  function nextDue(end) {
    let found = null;
    for (const [id, task] of tasks) {
      if (task.at > end) continue;
      if (!found || task.at < found.task.at || (task.at === found.task.at && id < found.id)) {
        found = { id, task };
      }
    }
    return found;
  }

  return {
    now: () => now,
    setTimeout(fn, ms) {
      seq += 1;
      tasks.set(seq, { at: now + Math.max(0, Number(ms) || 0), fn, every: 0 });
      return seq;
    },
    clearTimeout(id) {
      tasks.delete(id);
    },
    setInterval(fn, ms) {
      seq += 1;
      tasks.set(seq, { at: now + ms, fn, every: ms });
      return seq;
    },
    clearInterval(id) {
      tasks.delete(id);
    },
    /* Moves the clock forward, running what falls due, in order. */
    advance(ms) {
      const end = now + ms;
      for (let due = nextDue(end); due; due = nextDue(end)) {
        now = due.task.at;
        if (due.task.every) due.task.at += due.task.every;
        else tasks.delete(due.id);
        due.task.fn();
      }
      now = end;
    },
    /* Timers waiting (intervals included). */
    get pending() {
      return tasks.size;
    },
  };
}
