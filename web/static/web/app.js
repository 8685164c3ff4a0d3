// Shared helpers for the pages: API calls with clear errors, small DOM builders, following jobs (events, polling).
"use strict";

window.DS = (() => {
  const API = "/api/v1/";
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const KINDS = { text_to_image: "Text to image", image_to_image: "Image to image", random_diffusion: "Random diffusion" };

  class ApiError extends Error {
    constructor(message, status, errors) {
      super(message);
      this.status = status;
      this.errors = errors || {};
    }
  }

  function cookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return (meta && meta.content) || cookie("csrftoken");
  }

  // fetch() a path under /api/v1/ (or a full URL). JSON bodies with `json`, multipart with `form`.
  async function api(path, { method = "GET", json, form } = {}) {
    const headers = { Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    const url = /^(https?:)?\//.test(path) ? path : API + path;
    let response;
    try {
      response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    } catch (error) {
      throw new ApiError("Could not reach the server. Check the connection and try again.", 0);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      let message = data && data.detail ? String(data.detail) : `The server answered ${response.status} ${response.statusText}.`;
      if (response.status === 401 || response.status === 403) message += " You may need to sign in.";
      if (response.status >= 500 && !(data && data.detail)) message = "The server hit an error. Try again shortly.";
      throw new ApiError(message, response.status, data && data.errors);
    }
    return data;
  }

  // {field: ["msg"], loras: [{name: ["msg"]}]} -> [["field", "msg"], ["loras 1 name", "msg"]]
  function flattenErrors(errors, prefix = "") {
    const out = [];
    if (Array.isArray(errors)) {
      errors.forEach((item, i) => {
        if (typeof item === "string") out.push([prefix, item]);
        else if (item && typeof item === "object") out.push(...flattenErrors(item, `${prefix} ${i + 1}`.trim()));
      });
    } else if (errors && typeof errors === "object") {
      for (const [key, value] of Object.entries(errors)) {
        const name = key === "non_field_errors" ? prefix : `${prefix} ${key}`.trim();
        out.push(...flattenErrors(value, name));
      }
    } else if (errors) {
      out.push([prefix, String(errors)]);
    }
    return out;
  }

  function label(text) {
    const clean = text.replace(/_/g, " ");
    return clean.charAt(0).toUpperCase() + clean.slice(1);
  }

  function clearErrors(form, box) {
    if (box) {
      box.hidden = true;
      box.replaceChildren();
    }
    if (!form) return;
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    form.querySelectorAll(".field-error[data-generated]").forEach((el) => {
      const input = form.querySelector(`[aria-describedby~="${el.id}"]`);
      if (input) {
        const rest = input.getAttribute("aria-describedby").split(" ").filter((id) => id !== el.id);
        if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
        else input.removeAttribute("aria-describedby");
      }
      el.remove();
    });
  }

  // Shows an API error in `box` (role=alert) and next to the form's fields that it names.
  function showError(box, error, form) {
    clearErrors(form, box);
    const message = error instanceof Error ? error.message : String(error);
    const items = error instanceof ApiError ? flattenErrors(error.errors) : [];
    box.append(h("p", { class: "alert-title" }, message));
    if (items.length) {
      box.append(h("ul", {}, items.map(([field, text]) => h("li", {}, field ? `${label(field)}: ${text}` : text))));
    }
    box.hidden = false;
    if (form && error instanceof ApiError) {
      for (const [field, messages] of Object.entries(error.errors)) {
        const input = form.elements[field];
        if (!input || !input.setAttribute) continue;
        const id = `${input.id || field}-error`;
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${id}`.trim());
        const text = flattenErrors(messages).map(([, m]) => m).join(" ");
        input.closest(".field, fieldset")?.append(h("p", { class: "field-error", id, "data-generated": "" }, text));
      }
    }
    box.scrollIntoView({ block: "nearest" });
  }

  // h("a", {href: "/"}, "text", child, [children]) -> element; strings become text nodes (never HTML).
  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key in el && typeof value !== "string") el[key] = value;
      else el.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "";
    if (value < 1) return `${value.toFixed(2)} s`;
    if (value < 90) return `${value.toFixed(1)} s`;
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${Math.round(value % 60)} s`;
  }

  function dateTime(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function timeTaken(job) {
    if (!job.started_at || !job.finished_at) return null;
    return (new Date(job.finished_at) - new Date(job.started_at)) / 1000;
  }

  function shortId(id) {
    return String(id).slice(0, 8);
  }

  function loraText(loras) {
    if (!loras || !loras.length) return "no LoRA";
    return loras.map((l) => `${l.name} × ${l.scale}`).join(", ");
  }

  // One line for a job's state: what the status region announces.
  function statusText(job) {
    const p = job.progress || { step: 0, total: 0 };
    switch (job.status) {
      case "queued":
        return job.position ? `Queued: number ${job.position} in line.` : "Queued.";
      case "running":
        if (job.cancel_requested) return "Stopping at the next step…";
        return `Running: step ${p.step} of ${p.total}, ${job.images.length} of ${job.images_expected} images done.`;
      case "succeeded": {
        const n = job.images.length;
        const took = timeTaken(job);
        return `Finished: ${n} image${n === 1 ? "" : "s"}${took !== null ? ` in ${seconds(took)}` : ""}.`;
      }
      case "failed":
        return `Failed: ${job.error || "no reason given."}`;
      case "cancelled":
        return "Job cancelled.";
      default:
        return job.status;
    }
  }

  // Sends a job (send() resolves to it), shows it and keeps showing it until it finishes.
  // Returns the stop function of the polling, or null when the API refused the job.
  async function sendAndWatch(send, { show, status, submit, errorBox, form, onPreview }) {
    submit.disabled = true;
    status.textContent = "Sending…";
    try {
      const job = await send();
      // Ready for the next job at once: jobs queue on the server, the form need not wait for this one.
      submit.disabled = false;
      show(job);
      return watchJob(
        job.id,
        show,
        (error) => {
          status.textContent = `Lost touch with the job: ${error.message} Retrying…`;
        },
        { onPreview },
      );
    } catch (error) {
      submit.disabled = false;
      status.textContent = "Not sent: see the message above the form.";
      showError(errorBox, error, form);
      return null;
    }
  }

  // A cancel button for whichever job currentJob() returns; the answer is shown like any update.
  function wireCancel(button, currentJob, show, errorBox) {
    button.addEventListener("click", async () => {
      const job = currentJob();
      if (!job) return;
      try {
        show(await api(`jobs/${job.id}/cancel/`, { method: "POST" }));
      } catch (error) {
        showError(errorBox, error);
      }
    });
  }

  // Calls onUpdate(job) about every second until the job has finished; returns a stop function.
  function pollJob(id, onUpdate, onError) {
    let stopped = false;
    let timer = null;
    async function tick() {
      if (stopped) return;
      try {
        const job = await api(`jobs/${id}/`);
        if (stopped) return;
        onUpdate(job);
        if (FINISHED.includes(job.status)) return;
      } catch (error) {
        if (onError) onError(error);
        if (error instanceof ApiError && error.status === 404) return;
      }
      timer = setTimeout(tick, 1000);
    }
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  // Follows a job through its event stream (GET jobs/<id>/events/, Server-Sent Events): onUpdate(job) on every
  // step, position change and stored image, onPreview(event) for preview images. The job's JSON is read once at
  // the start, when an image is stored and at the end; everything between comes from the stream. Falls back to
  // pollJob where EventSource is missing or the stream cannot be opened. Returns a stop function.
  function watchJob(id, onUpdate, onError, { onPreview } = {}) {
    if (!window.EventSource) return pollJob(id, onUpdate, onError);
    let job = null;
    let stopped = false;
    let stopPolling = null;
    const source = new EventSource(`${API}jobs/${encodeURIComponent(id)}/events/`);
    watchJob.sources.add(source);
    const close = () => {
      source.close();
      watchJob.sources.delete(source);
    };
    const update = (changes) => {
      if (!job || stopped) return;
      job = { ...job, ...changes };
      onUpdate(job);
    };
    async function refetch() {
      try {
        const latest = await api(`jobs/${id}/`);
        if (stopped) return;
        // A step event can come before this answer: keep the later progress.
        if (job && latest.status === "running" && job.progress.step > latest.progress.step) latest.progress = job.progress;
        job = latest;
        onUpdate(job);
      } catch (error) {
        if (onError) onError(error);
      }
    }
    const on = (name, handle) =>
      source.addEventListener(name, (event) => {
        if (!stopped) handle(JSON.parse(event.data));
      });
    const progress = (step, total) => ({ step, total, fraction: total ? step / total : 0 });
    on("queued", (data) => update({ status: "queued", position: data.position }));
    on("started", (data) => update({ status: "running", position: null, progress: progress(0, data.total) }));
    on("progress", (data) => update({ status: "running", position: null, progress: progress(data.step, data.total) }));
    on("preview", (data) => onPreview && onPreview(data));
    on("image", () => refetch());
    for (const name of ["finished", "failed", "cancelled"]) {
      on(name, () => {
        close();
        refetch();
      });
    }
    // An EventSource reconnects by itself (sending Last-Event-ID); CLOSED means it gave up: poll instead.
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED || stopped || stopPolling) return;
      close();
      stopPolling = pollJob(id, onUpdate, onError);
    });
    refetch();
    return () => {
      stopped = true;
      close();
      if (stopPolling) stopPolling();
    };
  }
  watchJob.sources = new Set(); // open streams, for tests and for debugging

  // Absent values are left out so that the API applies its defaults.
  function numberOrNull(input) {
    if (!input || input.disabled || input.value.trim() === "") return null;
    const value = Number(input.value);
    return Number.isFinite(value) ? value : input.value;
  }

  function wireSeed(form) {
    const seed = form.elements.seed;
    const random = form.querySelector("#seed_random");
    const sync = () => {
      seed.disabled = random.checked;
      if (!random.checked) seed.focus();
    };
    random.addEventListener("change", sync);
    return {
      value: () => (random.checked ? null : numberOrNull(seed)),
      set(value) {
        random.checked = !value;
        seed.disabled = !value;
        seed.value = value || "";
      },
    };
  }

  function option(value, text, selected = false) {
    return h("option", { value, selected }, text);
  }

  return {
    ApiError,
    FINISHED,
    KINDS,
    api,
    clearErrors,
    dateTime,
    h,
    loraText,
    numberOrNull,
    option,
    pollJob,
    seconds,
    sendAndWatch,
    shortId,
    showError,
    statusText,
    timeTaken,
    watchJob,
    wireCancel,
    wireSeed,
  };
})();
