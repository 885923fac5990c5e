// The dashboard's script: keeps the overview's counts and chart, and a task's
// transitions, current from the server's event stream. It writes text only
// (textContent), never markup, so nothing the server sends can become a script.
"use strict";

(function () {
  const base = document.body.dataset.base || "";
  const counts = document.getElementById("counts");
  const transitions = document.getElementById("transitions");
  const live = document.getElementById("live");
  if (!counts && !transitions) {
    return;
  }
  // The task's id, percent-encoded by the server (so that it survives the trip
  // through an attribute whatever it holds).
  const id = transitions ? transitions.dataset.id : null;
  const url = base + "/events" + (id !== null ? "?id=" + id : "");

  const say = function (text) {
    if (live) {
      live.textContent = text;
    }
  };

  // Transitions per second over the last five minutes, newest last.
  const SECONDS = 300;
  const rates = [];
  const canvas = document.getElementById("rate");
  const draw = function () {
    if (!canvas || !canvas.getContext) {
      return;
    }
    const g = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    g.clearRect(0, 0, w, h);
    const top = Math.max(1, Math.max.apply(null, rates.concat([0])));
    const bar = w / SECONDS;
    g.fillStyle = "#3b6ea5";
    rates.forEach(function (n, i) {
      const x = w - (rates.length - i) * bar;
      const y = h - (n / top) * (h - 14);
      g.fillRect(x, y, Math.max(1, bar - 0.5), h - y);
    });
    g.fillStyle = "#555";
    g.font = "11px sans-serif";
    g.fillText("max " + top + "/s", 4, 11);
  };

  const source = new EventSource(url);
  source.addEventListener("open", function () {
    say("live");
  });
  source.addEventListener("error", function () {
    say("reconnecting…");
  });
  source.addEventListener("counts", function (e) {
    const c = JSON.parse(e.data);
    Object.keys(c).forEach(function (name) {
      const cell = document.getElementById("count-" + name);
      if (cell) {
        cell.textContent = String(c[name]);
      }
    });
    say("live");
  });
  source.addEventListener("phase", function (e) {
    const phase = document.querySelector("td.phase");
    if (phase) {
      phase.textContent = JSON.parse(e.data);
    }
  });
  source.addEventListener("missed", function () {
    say("live (caught up after missing some changes)");
  });
  source.addEventListener("unavailable", function (e) {
    say("the task store did not answer: " + JSON.parse(e.data));
  });
  source.addEventListener("rate", function (e) {
    rates.push(Number(e.data));
    while (rates.length > SECONDS) {
      rates.shift();
    }
    draw();
  });
  source.addEventListener("transition", function (e) {
    if (!transitions) {
      return;
    }
    const t = JSON.parse(e.data);
    let text = new Date().toISOString() + "  " + t.from + " → " + t.to;
    if (t.failure !== null) {
      text += " (" + t.failure + ")";
    }
    if (t.progress !== null) {
      text = new Date().toISOString() + "  progress " + t.progress;
    }
    const item = document.createElement("li");
    item.textContent = text;
    transitions.appendChild(item);
    const phase = document.querySelector("td.phase");
    if (phase && t.progress === null) {
      phase.textContent = t.to;
    }
  });
  draw();
})();
