// The demo page: send a photo (base64) or a URL to POST /predict, draw the top five as bars.
"use strict";

const MAX_PHOTO = 4500000; // the function's limit: base64 and the proxy event stay under Lambda's 6 MB
const $ = (id) => document.getElementById(id);

function show(id, text) {
  $(id).textContent = text;
  $(id).hidden = !text;
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.split(",", 2)[1]);
    reader.onerror = () => reject(new Error("could not read " + file.name));
    reader.readAsDataURL(file);
  });
}

function draw(predictions) {
  const chart = $("chart");
  chart.replaceChildren();
  for (const p of predictions) {
    const percent = (100 * p.probability).toFixed(1);
    const item = document.createElement("li");
    item.innerHTML = '<div class="label"><span></span><span></span></div><div class="track"><div class="bar"></div></div>';
    item.querySelector(".label span:first-child").textContent = p.rank + ". " + p.breed;
    item.querySelector(".label span:last-child").textContent = percent + " %";
    item.querySelector(".bar").style.width = percent + "%";
    item.title = "log-probability " + p.log_probability.toFixed(3);
    chart.append(item);
  }
  $("result").hidden = false;
}

async function request() {
  const file = $("file").files[0];
  const url = $("url").value.trim();
  if (file) {
    if (file.size > MAX_PHOTO) throw new Error("the photo is over 4.5 MB");
    $("preview").src = URL.createObjectURL(file);
    return { image: await readBase64(file) };
  }
  if (url) {
    $("preview").src = url;
    return { url };
  }
  throw new Error("choose a photo or paste a URL");
}

async function predict(event) {
  event.preventDefault();
  show("error", "");
  $("result").hidden = true;
  $("submit").disabled = true;
  show("status", "asking the model…");
  const started = performance.now();
  try {
    const headers = { "Content-Type": "application/json" };
    if ($("key").value) headers["x-api-key"] = $("key").value;
    const response = await fetch("/predict", { method: "POST", headers, body: JSON.stringify(await request()) });
    const text = await response.text();
    let answer;
    try { answer = JSON.parse(text); } catch { answer = { message: text }; }
    if (!response.ok) throw new Error(response.status + ": " + (answer.message || response.statusText));
    draw(answer.predictions);
    show("status", "answered in " + Math.round(performance.now() - started) + " ms"
      + (answer.endpoint ? " by endpoint " + answer.endpoint : ""));
  } catch (error) {
    show("status", "");
    show("error", error.message);
  } finally {
    $("submit").disabled = false;
    document.dispatchEvent(new Event("predicted"));
  }
}

async function listSamples() {
  const response = await fetch("/samples");
  if (!response.ok) return;
  const { samples } = await response.json();
  for (const sample of samples) {
    const link = document.createElement("a");
    link.textContent = sample.name;
    link.onclick = () => { $("file").value = ""; $("url").value = sample.url; };
    $("sample-links").append(link);
  }
  $("samples").hidden = samples.length === 0;
}

$("preview").addEventListener("error", () => $("preview").removeAttribute("src"));
$("form").addEventListener("submit", predict);
$("file").addEventListener("change", () => { $("url").value = ""; });
listSamples();
