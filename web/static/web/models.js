// Models and LoRAs: the registry as the API lists it, read only.
"use strict";

(() => {
  const { api, h, showError } = DS;
  const errorBox = document.getElementById("models-error");

  function state(row) {
    const parts = [row.enabled ? "enabled" : "disabled"];
    if (row.preload) parts.push("preloaded");
    return parts.join(", ");
  }

  function fill(table, rows, cells) {
    const body = table.querySelector("tbody");
    if (!rows.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "None registered.")));
      return;
    }
    body.replaceChildren(...rows.map((row) => h("tr", {}, cells(row).map((cell, i) => h(i ? "td" : "th", i ? {} : { scope: "row" }, cell)))));
  }

  async function load() {
    try {
      const [models, loras] = await Promise.all([api("models/?limit=200"), api("loras/?limit=200")]);
      fill(document.getElementById("models-table"), models.results, (m) => [
        m.name,
        m.family,
        `${m.resolution}px`,
        m.default_scheduler,
        state(m),
        m.description,
      ]);
      fill(document.getElementById("loras-table"), loras.results, (l) => [
        l.name,
        l.family,
        String(l.default_scale),
        l.trigger_words,
        state(l),
        l.description,
      ]);
    } catch (error) {
      showError(errorBox, error);
    }
  }

  load();
})();
