// Random diffusion: every image of a dataset redrawn with a drawn prompt and model; shows each as it completes.
"use strict";

(() => {
  const { api, h, option, showError, clearErrors, statusText, numberOrNull } = DS;
  const form = document.getElementById("random-form");
  const errorBox = document.getElementById("form-error");
  const submit = document.getElementById("random-submit");
  const status = document.getElementById("job-status");
  const progress = document.getElementById("job-progress");
  const seedLine = document.getElementById("job-seed");
  const cancelButton = document.getElementById("job-cancel");
  const plan = document.getElementById("plan");
  const datasetSelect = form.elements.dataset;
  const modelChoices = document.getElementById("model-choices");
  const seed = DS.wireSeed(form);
  let sources = new Map(); // dataset image id -> url
  let stopPolling = null;
  let currentJob = null;

  async function load() {
    try {
      const [datasets, models] = await Promise.all([api("datasets/?limit=200"), api("models/?enabled=true&limit=200")]);
      const wanted = new URLSearchParams(location.search).get("dataset");
      datasetSelect.replaceChildren(
        ...(datasets.results.length
          ? datasets.results.map((d) => option(d.id, `${d.name} (${d.image_count} images)`, String(d.id) === wanted))
          : [option("", "No dataset yet")]),
      );
      modelChoices.replaceChildren(
        ...models.results.map((m) =>
          h("label", { class: "check" }, h("input", { type: "checkbox", name: "models", value: m.name }), ` ${m.name}`),
        ),
      );
      if (!models.results.length) modelChoices.append(h("p", { class: "muted" }, "No model is enabled."));
    } catch (error) {
      showError(errorBox, error);
    }
  }

  async function loadSources(datasetId) {
    sources = new Map();
    try {
      const page = await api(`datasets/${datasetId}/images/?limit=1000`);
      for (const image of page.results) sources.set(image.id, image.url);
    } catch (error) {
      // Thumbnails of the source images are a nicety; the job goes on without them.
    }
  }

  function payload() {
    const e = form.elements;
    const values = {
      dataset: Number(e.dataset.value),
      prompt_list: e.prompt_list.value
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean),
      negative_prompt: e.negative_prompt.value.trim(),
      steps: numberOrNull(e.steps),
      strength: numberOrNull(e.strength),
      guidance_scale: numberOrNull(e.guidance_scale),
      scheduler: e.scheduler.value,
      batch_size: numberOrNull(e.batch_size),
      seed: seed.value(),
    };
    const models = [...form.querySelectorAll('input[name="models"]:checked')].map((box) => box.value);
    if (models.length) values.models = models;
    for (const [key, value] of Object.entries(values)) {
      if (value === null || value === "") delete values[key];
    }
    return values;
  }

  function renderPlan(job) {
    plan.replaceChildren(
      ...job.params.items.map((item) =>
        h(
          "li",
          { class: "plan-item", "data-index": item.index, "data-state": "waiting" },
          h("div", { class: "thumbs" }, h("span", { class: "thumb placeholder", "data-source": "" }), h("span", { class: "thumb placeholder", "data-result": "" })),
          h(
            "div",
            {},
            h("p", { class: "drawn-prompt" }, item.prompt),
            h("p", { class: "muted" }, "Model ", h("span", { class: "drawn-model" }, item.model), ` · seed ${item.seed}`),
            h("p", { class: "item-state muted" }, "Waiting"),
          ),
        ),
      ),
    );
    for (const item of job.params.items) {
      const url = sources.get(item.source_image_id);
      if (url) {
        const li = plan.querySelector(`[data-index="${item.index}"]`);
        li.querySelector("[data-source]").replaceWith(h("img", { class: "thumb", src: url, alt: "Source image" }));
      }
    }
  }

  function show(job) {
    currentJob = job;
    status.textContent = statusText(job);
    status.dataset.status = job.status;
    progress.hidden = DS.FINISHED.includes(job.status);
    progress.value = job.progress.fraction;
    seedLine.hidden = false;
    seedLine.textContent = `Seed used: ${job.seed}. The same seed, dataset and lists draw the same prompts and models.`;
    cancelButton.hidden = DS.FINISHED.includes(job.status) || job.cancel_requested;
    if (!plan.children.length && job.params.items) renderPlan(job);
    for (const image of job.images) {
      const li = plan.querySelector(`[data-index="${image.index}"]`);
      if (!li || li.dataset.state === "done") continue;
      li.dataset.state = "done";
      li.querySelector("[data-result]").replaceWith(
        h("a", { href: image.url, target: "_blank", rel: "noopener" }, h("img", { class: "thumb", src: image.url, alt: `Result: ${image.prompt}` })),
      );
      li.querySelector(".item-state").textContent = "Done";
    }
    if (DS.FINISHED.includes(job.status)) {
      submit.disabled = false;
      plan.querySelectorAll('[data-state="waiting"] .item-state').forEach((el) => {
        el.textContent = job.status === "succeeded" ? "Done" : "Not made";
      });
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, errorBox);
    const values = payload();
    if (!values.dataset || !(values.prompt_list || []).length) {
      const errors = {};
      if (!values.dataset) errors.dataset = ["Choose a dataset."];
      if (!(values.prompt_list || []).length) errors.prompt_list = ["Enter at least one prompt."];
      showError(errorBox, new DS.ApiError("Invalid input.", 400, errors), form);
      return;
    }
    if (stopPolling) stopPolling();
    plan.replaceChildren();
    const send = async () => {
      const [job] = await Promise.all([api("random-diffusions/", { method: "POST", json: values }), loadSources(values.dataset)]);
      return job;
    };
    stopPolling = await DS.sendAndWatch(send, { show, status, submit, errorBox, form });
  });

  DS.wireCancel(cancelButton, () => currentJob, show, errorBox);

  load();
})();
