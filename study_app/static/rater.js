// Task page of the human study: show the task, send the answer, show the next one, repeat.
// The server decides everything (which item, which side, when the rater is done); this
// script never learns which model made an image and shows no feedback on correctness.
// Practice items are labelled as practice; with an exposure limit (data-exposure-ms) the
// images are hidden that long after they appeared, and the rater can still answer.
(function () {
  "use strict";
  const app = document.getElementById("app");
  const kind = app.dataset.kind;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const images = Array.from(document.querySelectorAll("#task img"));
  let task = null;        // current task id
  let shownAt = null;     // time the images finished loading
  let busy = true;        // true while a request is in flight or images load
  let pending = null;     // request to repeat after a network error
  const exposureMs = Number(app.dataset.exposureMs) || 0;
  let exposureTimer = null;

  // Agreeing to the consent form answers with this page: show the task page's own address, so
  // that a reload asks for the page and does not post the form again.
  if (window.location.pathname !== app.dataset.page) {
    window.history.replaceState(null, "", app.dataset.page);
  }

  function startExposure() {
    if (!exposureMs) return;
    exposureTimer = setTimeout(() => { app.classList.add("exposure-over"); }, exposureMs);
  }

  function resetExposure() {
    if (exposureTimer !== null) clearTimeout(exposureTimer);
    exposureTimer = null;
    app.classList.remove("exposure-over");
  }

  function setStatus(text) { $("status").textContent = text; $("status").hidden = !text; }

  function setButtons(enabled) {
    document.querySelectorAll("#task button").forEach((b) => { b.disabled = !enabled; });
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { /* an empty or HTML body */ }
    return { status: response.status, data: data };
  }

  function failed(message, retry) {
    busy = true;
    pending = retry;
    setStatus(message);
    $("retry").hidden = false;
  }

  function showProgress(done, total) {
    $("progress").max = total;
    $("progress").value = done;
    $("progress-text").textContent = done + " / " + total;
  }

  async function next() {
    busy = true;
    setButtons(false);
    setStatus("Loading…");
    let reply;
    try { reply = await post(app.dataset.next); } catch (e) { return failed("Connection problem.", next); }
    if (reply.status !== 200) return failed(reply.data.error || "The server could not give you a task.", next);
    return handle(reply.data);
  }

  function handle(d) {
    if (d.state === "task") return show(d);
    resetExposure();
    $("task").hidden = true;
    if (d.state === "finished") {
      // the server's count: every answer the rater gave (counted and catch), of their total
      showProgress(d.done, Math.max(d.done, d.total || 0));
      $("code").textContent = d.code;
      $("done").hidden = false;
      // Prolific's completion URL / MTurk's submit form: only offered after the last answer is stored
      if (d.complete) window.location.assign(d.complete);
      setStatus("");
    } else if (d.state === "closed") {
      setStatus("This study is closed. Thank you!");
    } else {
      setStatus("There are no tasks left for you right now. Thank you!");
    }
  }

  function show(d) {
    task = d.task;
    resetExposure();
    showProgress(d.done, d.total);
    // practice: which practice item this is (of how many), not how many were answered
    if (d.practice) $("progress-text").textContent = "practice " + (d.done + 1) + " / " + d.total;
    $("practice").hidden = !d.practice;
    $("label").textContent = d.label;
    $("task").hidden = false;
    $("cant").open = false;
    let waiting = images.length;
    const loaded = () => {
      waiting -= 1;
      if (waiting === 0) { shownAt = performance.now(); startExposure(); busy = false; setButtons(true); setStatus(""); }
    };
    images.forEach((img, i) => {
      img.onload = loaded;
      img.onerror = () => {
        setStatus("An image did not load. Please choose “Can’t answer” → “An image did not load”.");
        $("cant").open = true;
        shownAt = performance.now();
        busy = false;
        document.querySelectorAll("#task .unknown").forEach((b) => { b.disabled = false; });
      };
      img.src = d.images[i];
    });
  }

  async function answer(value, reason) {
    if (busy || task === null) return;
    busy = true;
    setButtons(false);
    const body = { task: task, answer: value, response_ms: Math.max(0, Math.round(performance.now() - shownAt)) };
    if (reason) body.reason = reason;
    const send = async () => {
      let reply;
      try { reply = await post(app.dataset.answer, body); } catch (e) { return failed("Connection problem; your answer was not sent yet.", send); }
      // 409: this answer (or the task) is already settled on the server; carry on.
      task = null;
      if (reply.status === 200 && reply.data.next) return handle(reply.data.next);
      if (reply.status === 200 || reply.status === 409) return next();
      return failed(reply.data.error || "The answer could not be stored.", send);
    };
    return send();
  }

  document.querySelectorAll("#task .answer").forEach((b) => {
    b.addEventListener("click", () => answer(kind === "rating" ? Number(b.dataset.answer) : b.dataset.answer));
  });
  document.querySelectorAll("#task .unknown").forEach((b) => {
    b.addEventListener("click", () => answer("unknown", b.dataset.reason));
  });
  $("retry-button").addEventListener("click", () => {
    $("retry").hidden = true;
    const again = pending; pending = null;
    if (again) again();
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (kind === "rating" && /^[1-5]$/.test(event.key)) { event.preventDefault(); answer(Number(event.key)); }
    if (kind === "pairwise" && event.key === "ArrowLeft") { event.preventDefault(); answer("left"); }
    if (kind === "pairwise" && event.key === "ArrowRight") { event.preventDefault(); answer("right"); }
  });
  // The page comes with the rater's first task (or their code); later ones come with answers.
  const first = $("first-task");
  if (first) handle(JSON.parse(first.textContent)); else next();
})();
