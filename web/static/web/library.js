// Library: finished images grouped by job, newest first; full-size view, download, delete, reuse settings.
"use strict";

(() => {
  const { api, h, showError, shortId, KINDS } = DS;
  const PAGE = 10;
  const library = document.getElementById("library");
  const status = document.getElementById("library-status");
  const errorBox = document.getElementById("library-error");
  const loadMore = document.getElementById("load-more");
  const viewer = document.getElementById("viewer");
  const viewerImage = document.getElementById("viewer-image");
  const viewerTitle = document.getElementById("viewer-title");
  const viewerCaption = document.getElementById("viewer-caption");
  const viewerDownload = document.getElementById("viewer-download");
  const confirmDialog = document.getElementById("confirm-delete");
  let next = `jobs/?limit=${PAGE}`;
  let shownJobs = 0;

  function download(image) {
    return `${image.url}${image.url.includes("?") ? "&" : "?"}download=1`;
  }

  function recipe(image) {
    return `${image.model} · ${DS.loraText(image.loras)} · seed ${image.seed} · ${image.steps} steps · ${image.width}×${image.height}`;
  }

  function openViewer(image, opener) {
    viewerTitle.textContent = `Image ${image.index + 1} of job ${shortId(image.job)}`;
    viewerImage.src = image.url;
    viewerImage.alt = image.prompt;
    viewerCaption.textContent = `${image.prompt} — ${recipe(image)}`;
    viewerDownload.href = download(image);
    viewer.showModal();
    viewer.addEventListener("close", () => opener.focus(), { once: true });
  }

  function askToDelete() {
    return new Promise((resolve) => {
      confirmDialog.returnValue = "";
      confirmDialog.addEventListener("close", () => resolve(confirmDialog.returnValue === "delete"), { once: true });
      confirmDialog.showModal();
    });
  }

  async function deleteImage(image, card, button) {
    if (!(await askToDelete())) {
      button.focus();
      return;
    }
    try {
      await api(`images/${image.id}/`, { method: "DELETE" });
    } catch (error) {
      showError(errorBox, error);
      button.focus();
      return;
    }
    const group = card.closest("[data-job]");
    const sibling = card.nextElementSibling || card.previousElementSibling;
    card.remove();
    status.textContent = `Image ${image.index + 1} of job ${shortId(image.job)} deleted.`;
    if (!group.querySelector("[data-image]")) {
      group.remove();
      shownJobs -= 1;
      if (!shownJobs) status.textContent += " The library is empty.";
    }
    const target = sibling && sibling.isConnected ? sibling.querySelector("button") : document.getElementById("main");
    target.focus();
  }

  function imageCard(image) {
    const card = h("li", { class: "image-card", "data-image": image.id });
    const view = h(
      "button",
      { class: "image-button", type: "button", "aria-label": `View image ${image.index + 1} full size` },
      h("img", { src: image.url, alt: image.prompt, loading: "lazy", width: image.width, height: image.height }),
    );
    view.addEventListener("click", () => openViewer(image, view));
    const remove = h("button", { class: "button danger small", type: "button", "data-delete": "" }, "Delete");
    remove.addEventListener("click", () => deleteImage(image, card, remove));
    card.append(
      view,
      h(
        "div",
        { class: "image-meta" },
        h("p", { class: "image-prompt" }, image.prompt),
        h("p", { class: "muted" }, `${image.model} · ${DS.loraText(image.loras)} · seed ${image.seed}`),
        h(
          "p",
          { class: "image-actions" },
          h("a", { class: "button small", href: download(image), download: "" }, "Download"),
          h("a", { class: "button small", href: `/?image=${image.id}` }, "Use these settings again"),
          remove,
        ),
      ),
    );
    return card;
  }

  function jobGroup(job) {
    const images = [...job.images].sort((a, b) => a.index - b.index);
    const took = DS.timeTaken(job);
    const p = job.params || {};
    const models = [...new Set(images.map((i) => i.model))].join(", ");
    const facts = [
      `${images.length} image${images.length === 1 ? "" : "s"}`,
      models,
      job.kind === "random_diffusion" ? null : DS.loraText(p.loras),
      `seed ${job.seed}`,
      took !== null ? `took ${DS.seconds(took)}` : null,
      job.status !== "succeeded" ? job.status : null,
    ].filter(Boolean);
    return h(
      "section",
      { class: "job-group card", "data-job": job.id, "aria-label": `${KINDS[job.kind] || job.kind}, ${DS.dateTime(job.queued_at)}` },
      h("h2", {}, `${KINDS[job.kind] || job.kind} · `, h("time", { datetime: job.queued_at }, DS.dateTime(job.queued_at))),
      job.kind === "random_diffusion" ? h("p", {}, `Prompts: ${(p.prompt_list || []).join(" / ")}`) : h("p", { class: "job-prompt" }, p.prompt),
      h("p", { class: "muted" }, facts.join(" · ")),
      h("ul", { class: "image-grid" }, images.map(imageCard)),
    );
  }

  async function loadPage() {
    loadMore.disabled = true;
    try {
      const page = await api(next);
      for (const job of page.results) {
        if (!job.images.length) continue;
        library.append(jobGroup(job));
        shownJobs += 1;
      }
      next = page.next;
      loadMore.hidden = !next;
      status.textContent = shownJobs ? `${shownJobs} job${shownJobs === 1 ? "" : "s"} with images shown, newest first.` : "No images yet: generate some first.";
    } catch (error) {
      status.textContent = "";
      showError(errorBox, error);
    }
    loadMore.disabled = false;
  }

  viewer.querySelector("[data-close]").addEventListener("click", () => viewer.close());
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) viewer.close(); // a click on the backdrop
  });
  loadMore.addEventListener("click", loadPage);
  loadPage();
})();
