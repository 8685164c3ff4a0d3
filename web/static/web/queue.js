// Queue: waiting and running jobs with positions, progress, estimated start and cancel. The first jobs in line
// are followed through their event streams (progress every step, positions as they change) and the list is
// re-read every 5 s; without streams (no EventSource, or a stream that cannot open) it is re-read every second.
"use strict";

(() => {
  const { api, h, showError, shortId, KINDS } = DS;
  const list = document.getElementById("queue-list");
  const empty = document.getElementById("queue-empty");
  const recent = document.getElementById("recent-list");
  const status = document.getElementById("queue-status");
  const errorBox = document.getElementById("queue-error");
  const heading = document.getElementById("active-heading");
  let ticks = 0;
  let timer = null;
  const MAX_STREAMS = 10;
  const streams = new Map(); // job id -> {source, entry, row}
  const refused = new Set(); // jobs whose stream could not be opened: polled with the list

  function follow(entry, row) {
    const id = entry.job.id;
    if (!window.EventSource || streams.has(id) || refused.has(id) || streams.size >= MAX_STREAMS) return;
    const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(id)}/events/`);
    const state = { source, entry, row };
    streams.set(id, state);
    const change = (position, jobChanges) => {
      state.entry = { ...state.entry, position, job: { ...state.entry.job, ...jobChanges } };
      state.row.dataset.live = "stream";
      updateRow(state.row, state.entry);
    };
    const on = (name, handle) => source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
    on("queued", (data) => change(data.position, { status: "queued" }));
    on("started", () => change(null, { status: "running" }));
    on("progress", (data) =>
      change(null, { status: "running", progress: { step: data.step, total: data.total, fraction: data.total ? data.step / data.total : 0 } }),
    );
    for (const name of ["finished", "failed", "cancelled"]) {
      on(name, () => {
        unfollow(id);
        schedule(0); // the job leaves the list now, not at the next refresh
      });
    }
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return; // it reconnects by itself
      unfollow(id);
      refused.add(id);
    });
  }

  function unfollow(id) {
    const state = streams.get(id);
    if (!state) return;
    state.source.close();
    streams.delete(id);
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  function describe(job) {
    const p = job.params || {};
    if (job.kind === "random_diffusion") {
      const count = (p.prompt_list || []).length;
      return `${job.images_expected} dataset images, ${count} prompt${count === 1 ? "" : "s"}`;
    }
    return p.prompt || "";
  }

  function startText(entry) {
    if (entry.job.status === "running") return entry.job.cancel_requested ? "Stopping…" : "Running now";
    if (entry.worker_available === false) return entry.note || "No worker is running for this queue";
    if (entry.estimated_start_s === null) return "Start time not yet known";
    if (entry.estimated_start_s < 1) return "Starts next";
    return `Starts in about ${DS.seconds(entry.estimated_start_s)}`;
  }

  function createRow(job) {
    const cancel = h("button", { class: "button", type: "button", "data-cancel": "", "aria-label": `Cancel job ${shortId(job.id)}` }, "Cancel");
    cancel.addEventListener("click", () => cancelJob(job.id, cancel));
    return h(
      "li",
      { class: "job card", "data-job": job.id },
      h(
        "div",
        { class: "job-head" },
        h("strong", { "data-title": "" }),
        h("span", { class: "badge", "data-status": "" }),
      ),
      h("p", { class: "job-prompt", "data-prompt": "" }),
      h("progress", { max: 1, value: 0, "aria-label": `Progress of job ${shortId(job.id)}` }),
      h("div", { class: "job-foot" }, h("span", { class: "muted", "data-detail": "" }), cancel),
    );
  }

  function updateRow(row, entry) {
    const job = entry.job;
    const place = entry.position ? `#${entry.position} · ` : "";
    row.querySelector("[data-title]").textContent = `${place}${KINDS[job.kind] || job.kind} · ${job.model || "several models"}`;
    const badge = row.querySelector("[data-status]");
    badge.textContent = job.cancel_requested ? "stopping" : job.status;
    badge.dataset.status = job.status;
    row.querySelector("[data-prompt]").textContent = describe(job);
    row.querySelector("progress").value = job.progress.fraction;
    const steps = job.progress.total ? `step ${job.progress.step} of ${job.progress.total} · ` : "";
    row.querySelector("[data-detail]").textContent = `${steps}${startText(entry)} · job ${shortId(job.id)}`;
    row.querySelector("[data-cancel]").disabled = job.cancel_requested;
  }

  async function refresh() {
    try {
      const entries = await api("queue/");
      errorBox.hidden = true;
      const keep = new Set(entries.map((e) => e.job.id));
      for (const id of [...streams.keys()]) if (!keep.has(id)) unfollow(id);
      list.querySelectorAll("[data-job]").forEach((row) => {
        if (keep.has(row.dataset.job)) return;
        const hadFocus = row.contains(document.activeElement);
        row.remove();
        if (hadFocus) heading.focus();
      });
      let previous = null;
      for (let entry of entries) {
        let row = list.querySelector(`[data-job="${entry.job.id}"]`);
        if (!row) row = createRow(entry.job);
        const state = streams.get(entry.job.id);
        if (state) {
          // The stream may be ahead of this answer: keep its later progress.
          if (state.entry.job.progress.step > entry.job.progress.step) entry = { ...entry, job: { ...entry.job, progress: state.entry.job.progress } };
          state.entry = entry;
          state.row = row;
        }
        updateRow(row, entry);
        follow(entry, row);
        // Move a row only when its place changed, so that keyboard focus on its button stays put.
        const expected = previous ? previous.nextElementSibling : list.firstElementChild;
        if (expected !== row) list.insertBefore(row, expected);
        previous = row;
      }
      empty.hidden = entries.length > 0;
      if (ticks % (streams.size ? 1 : 3) === 0) await refreshRecent();
    } catch (error) {
      showError(errorBox, new Error(`Could not refresh the queue: ${error.message}`));
    }
    ticks += 1;
    schedule(streams.size ? 5000 : 1000);
  }

  async function refreshRecent() {
    const page = await api("jobs/?limit=8");
    const finished = page.results.filter((job) => DS.FINISHED.includes(job.status));
    recent.replaceChildren(
      ...finished.map((job) =>
        h(
          "li",
          { "data-job": job.id },
          h("span", { class: "badge", "data-status": job.status }, job.status),
          ` ${KINDS[job.kind] || job.kind} · ${describe(job)} · ${DS.dateTime(job.finished_at)} · job ${shortId(job.id)}`,
        ),
      ),
    );
    if (!finished.length) recent.append(h("li", { class: "muted" }, "No finished jobs yet."));
  }

  async function cancelJob(id, button) {
    button.disabled = true;
    try {
      const job = await api(`jobs/${id}/cancel/`, { method: "POST" });
      if (job.status === "cancelled") {
        status.textContent = `Job ${shortId(id)} cancelled.`;
        return;
      }
      status.textContent = `Stopping job ${shortId(id)} at its next step…`;
      DS.pollJob(id, (latest) => {
        if (latest.status === "cancelled") status.textContent = `Job ${shortId(id)} cancelled.`;
        else if (DS.FINISHED.includes(latest.status)) status.textContent = `Job ${shortId(id)} ${latest.status} before it could stop.`;
      });
    } catch (error) {
      button.disabled = false;
      showError(errorBox, error);
    }
  }

  refresh();
})();
