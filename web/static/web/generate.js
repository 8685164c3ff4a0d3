// Generate: text to image or image to image with LoRAs; follows the job and shows its images.
"use strict";

(() => {
  const { api, h, option, showError, clearErrors, statusText, numberOrNull } = DS;
  const form = document.getElementById("generate-form");
  const errorBox = document.getElementById("form-error");
  const submit = document.getElementById("generate-submit");
  const status = document.getElementById("job-status");
  const progress = document.getElementById("job-progress");
  const seedLine = document.getElementById("job-seed");
  const gallery = document.getElementById("job-images");
  const previews = document.getElementById("job-previews");
  const links = document.getElementById("job-links");
  const cancelButton = document.getElementById("job-cancel");
  const modelSelect = form.elements.model;
  const loraRows = [...form.querySelectorAll("[data-lora-row]")];
  const seed = DS.wireSeed(form);
  let models = [];
  let loras = [];
  let stopPolling = null;
  let currentJob = null;

  function fillLoraOptions() {
    const model = models.find((m) => m.name === modelSelect.value);
    const usable = loras.filter((l) => l.enabled && (!model || l.family === model.family));
    for (const row of loraRows) {
      const select = row.querySelector("[data-lora-name]");
      const chosen = select.value;
      select.replaceChildren(
        option("", usable.length ? "None" : "None registered"),
        ...usable.map((l) => option(l.name, l.trigger_words ? `${l.name} (${l.trigger_words})` : l.name, l.name === chosen)),
      );
    }
  }

  for (const row of loraRows) {
    const select = row.querySelector("[data-lora-name]");
    select.addEventListener("change", () => {
      const adapter = loras.find((l) => l.name === select.value);
      if (adapter) row.querySelector("[data-lora-scale]").value = adapter.default_scale;
    });
  }
  modelSelect.addEventListener("change", () => {
    const model = models.find((m) => m.name === modelSelect.value);
    const size = model ? `${model.resolution}` : "Model's size";
    form.elements.width.placeholder = size;
    form.elements.height.placeholder = size;
    fillLoraOptions();
  });

  async function loadRegistry() {
    try {
      const [modelPage, loraPage] = await Promise.all([api("models/?enabled=true&limit=200"), api("loras/?enabled=true&limit=200")]);
      models = modelPage.results;
      loras = loraPage.results;
    } catch (error) {
      showError(errorBox, error);
      return;
    }
    modelSelect.replaceChildren(
      ...(models.length
        ? models.map((m) => option(m.name, `${m.name} (${m.resolution}px)`))
        : [option("", "No model is registered")]),
    );
    modelSelect.dispatchEvent(new Event("change"));
  }

  function chosenLoras() {
    return loraRows
      .map((row) => ({
        name: row.querySelector("[data-lora-name]").value,
        scale: numberOrNull(row.querySelector("[data-lora-scale]")),
      }))
      .filter((l) => l.name);
  }

  function payload() {
    const e = form.elements;
    const values = {
      prompt: e.prompt.value.trim(),
      negative_prompt: e.negative_prompt.value.trim(),
      model: e.model.value,
      num_images: numberOrNull(e.num_images),
      steps: numberOrNull(e.steps),
      guidance_scale: numberOrNull(e.guidance_scale),
      width: numberOrNull(e.width),
      height: numberOrNull(e.height),
      scheduler: e.scheduler.value,
      seed: seed.value(),
      loras: chosenLoras(),
      lora_scale: numberOrNull(e.lora_scale),
      webhook_url: e.webhook_url.value.trim(),
      preview: e.preview.checked,
    };
    const file = e.init_image.files[0];
    if (file) values.strength = numberOrNull(e.strength);
    for (const [key, value] of Object.entries(values)) {
      if (value === null || value === "") delete values[key];
    }
    if (!file) return { json: values };
    const data = new FormData();
    for (const [key, value] of Object.entries(values)) {
      data.append(key, key === "loras" ? JSON.stringify(value) : value);
    }
    data.append("init_image", file);
    return { form: data };
  }

  // Preview events: one small picture per image of the running batch, replaced as the run goes on.
  function showPreview(event) {
    previews.hidden = false;
    for (const image of event.images) {
      let img = previews.querySelector(`[data-index="${image.index}"]`);
      if (!img) {
        img = h("img", { "data-index": image.index, alt: `Preview of image ${image.index + 1}` });
        previews.append(img);
      }
      img.src = image.data;
      img.dataset.step = event.step;
    }
  }

  function show(job) {
    // A cancel asked for from this page holds until the job ends, whatever a step event carried before it.
    if (currentJob && currentJob.id === job.id && currentJob.cancel_requested) job = { ...job, cancel_requested: true };
    currentJob = job;
    status.textContent = statusText(job);
    status.dataset.status = job.status;
    progress.hidden = job.status !== "running" && job.status !== "queued";
    progress.value = job.progress.fraction;
    seedLine.hidden = false;
    seedLine.textContent =
      job.images_expected > 1 ? `Seed used: ${job.seed} (image n uses ${job.seed} + n).` : `Seed used: ${job.seed}.`;
    cancelButton.hidden = DS.FINISHED.includes(job.status) || job.cancel_requested;
    links.hidden = !DS.FINISHED.includes(job.status);
    const images = [...job.images].sort((a, b) => a.index - b.index);
    const shown = new Set([...gallery.children].map((el) => el.dataset.image));
    for (const image of images) {
      if (shown.has(image.id)) continue;
      gallery.append(
        h(
          "figure",
          { "data-image": image.id },
          h("a", { href: image.url, target: "_blank", rel: "noopener" }, h("img", { src: image.url, alt: `Image ${image.index + 1}: ${image.prompt}`, width: image.width, height: image.height })),
          h("figcaption", {}, `Seed ${image.seed}`),
        ),
      );
    }
    if (DS.FINISHED.includes(job.status)) {
      submit.disabled = false;
      previews.hidden = true;
      previews.replaceChildren();
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, errorBox);
    if (!form.elements.prompt.value.trim()) {
      showError(errorBox, new DS.ApiError("Invalid input.", 400, { prompt: ["Enter a prompt."] }), form);
      form.elements.prompt.focus();
      return;
    }
    if (stopPolling) stopPolling();
    gallery.replaceChildren();
    previews.replaceChildren();
    currentJob = null;
    const send = () => api("generations/", { method: "POST", ...payload() });
    stopPolling = await DS.sendAndWatch(send, { show, status, submit, errorBox, form, onPreview: showPreview });
  });

  DS.wireCancel(cancelButton, () => currentJob, show, errorBox);

  // "Use these settings again" from the library: /?image=<id>.
  async function prefill() {
    const id = new URLSearchParams(location.search).get("image");
    if (!id) return;
    try {
      const image = await api(`images/${encodeURIComponent(id)}/`);
      const e = form.elements;
      e.prompt.value = image.prompt;
      e.negative_prompt.value = image.negative_prompt || "";
      if (models.some((m) => m.name === image.model)) {
        e.model.value = image.model;
        e.model.dispatchEvent(new Event("change"));
      }
      e.steps.value = image.steps;
      e.guidance_scale.value = image.guidance_scale;
      e.width.value = image.width;
      e.height.value = image.height;
      e.scheduler.value = image.scheduler;
      e.num_images.value = 1;
      e.lora_scale.value = image.lora_scale;
      if (image.strength !== null) e.strength.value = image.strength;
      seed.set(image.seed);
      loraRows.forEach((row, i) => {
        const lora = image.loras[i];
        row.querySelector("[data-lora-name]").value = lora ? lora.name : "";
        row.querySelector("[data-lora-scale]").value = lora ? lora.scale : 1;
      });
      status.textContent = `Settings of image ${DS.shortId(image.id)} loaded (seed ${image.seed}).`;
    } catch (error) {
      showError(errorBox, error);
    }
  }

  loadRegistry().then(prefill);
})();
