// Datasets: the list with a few thumbnails each; staff create datasets and upload images.
"use strict";

(() => {
  const { api, h, showError, clearErrors, option } = DS;
  const container = document.getElementById("datasets");
  const status = document.getElementById("datasets-status");
  const errorBox = document.getElementById("datasets-error");
  const createForm = document.getElementById("dataset-create");
  const uploadForm = document.getElementById("dataset-upload");
  const THUMBS = 8;

  function reason(error) {
    const messages = Object.values(error.errors || {}).flat();
    return messages.length ? messages.join(" ") : error.message;
  }

  function thumbs(images) {
    return h("ul", { class: "thumb-row" }, images.map((image) => h("li", {}, h("img", { class: "thumb", src: image.url, alt: `Image ${image.id}, ${image.width}×${image.height}`, loading: "lazy" }))));
  }

  function countText(total, shown) {
    const all = `${total} image${total === 1 ? "" : "s"}`;
    return shown < total ? `${all}, the first ${shown} shown` : all;
  }

  // The card shows the first THUMBS images and says so; "Show all" fetches the rest, so the count
  // and the thumbnails never disagree.
  async function datasetCard(dataset) {
    let page = { count: dataset.image_count, results: [] };
    try {
      page = await api(`datasets/${dataset.id}/images/?limit=${THUMBS}`);
    } catch (error) {
      // The card still shows the name and count.
    }
    const count = h("p", { class: "muted", "data-count": "" }, countText(page.count, page.results.length));
    const row = page.results.length ? thumbs(page.results) : null;
    let more = null;
    if (page.results.length && page.results.length < page.count) {
      more = h("button", { class: "button", type: "button" }, `Show all ${page.count} images`);
      more.addEventListener("click", async () => {
        more.disabled = true;
        try {
          const all = await api(`datasets/${dataset.id}/images/?limit=1000`);
          row.replaceWith(thumbs(all.results));
          count.textContent = countText(all.count, all.results.length);
          more.remove();
        } catch (error) {
          more.disabled = false;
          showError(errorBox, error);
        }
      });
    }
    return h(
      "section",
      { class: "card", "data-dataset": dataset.name },
      h("h2", {}, dataset.name),
      dataset.description ? h("p", {}, dataset.description) : null,
      count,
      row,
      more,
      page.count ? h("p", {}, h("a", { href: `/random/?dataset=${dataset.id}` }, `Random diffusion over ${dataset.name}`)) : null,
    );
  }

  async function load() {
    try {
      const page = await api("datasets/?limit=200");
      container.replaceChildren(...(await Promise.all(page.results.map(datasetCard))));
      if (!page.results.length) container.append(h("p", { class: "muted" }, "No dataset yet."));
      if (uploadForm) {
        const select = uploadForm.elements.dataset;
        const chosen = select.value;
        select.replaceChildren(...page.results.map((d) => option(d.id, d.name, String(d.id) === chosen)));
      }
    } catch (error) {
      showError(errorBox, error);
    }
  }

  if (createForm) {
    const box = createForm.querySelector("[data-error]");
    createForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(createForm, box);
      const e = createForm.elements;
      try {
        const dataset = await api("datasets/", { method: "POST", json: { name: e.name.value.trim(), description: e.description.value.trim() } });
        status.textContent = `Dataset ${dataset.name} created.`;
        createForm.reset();
        await load();
        uploadForm.elements.dataset.value = dataset.id;
      } catch (error) {
        showError(box, error, createForm);
      }
    });
  }

  if (uploadForm) {
    const box = uploadForm.querySelector("[data-error]");
    uploadForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(uploadForm, box);
      const files = [...uploadForm.elements.image.files];
      const datasetId = uploadForm.elements.dataset.value;
      if (!datasetId || !files.length) {
        showError(box, new DS.ApiError("Invalid input.", 400, { ...(datasetId ? {} : { dataset: ["Choose a dataset."] }), ...(files.length ? {} : { image: ["Choose one or more images."] }) }), uploadForm);
        return;
      }
      const failures = [];
      let added = 0;
      for (const [i, file] of files.entries()) {
        status.textContent = `Uploading ${i + 1} of ${files.length}: ${file.name}…`;
        const form = new FormData();
        form.append("image", file);
        try {
          await api(`datasets/${datasetId}/images/`, { method: "POST", form });
          added += 1;
        } catch (error) {
          failures.push({ file, error });
        }
      }
      status.textContent = `${added} of ${files.length} image${files.length === 1 ? "" : "s"} added.`;
      if (failures.length) {
        box.replaceChildren(
          h("p", { class: "alert-title" }, "Some files were refused:"),
          h("ul", {}, failures.map(({ file, error }) => h("li", {}, `${file.name}: ${reason(error)}`))),
        );
        box.hidden = false;
      }
      uploadForm.elements.image.value = "";
      await load();
    });
  }

  load();
})();
