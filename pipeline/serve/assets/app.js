// The search page: a photo (chosen, taken or dropped) is POSTed to /search; the matches fill the grid.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("search"), photoInput = $("photo"), drop = $("drop"), preview = $("preview");
const go = $("go"), status = $("status"), grid = $("grid"), card = $("card");
let photo = null;

function say(text, isError) {
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function choose(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) { say("That file is not an image.", true); return; }
  photo = file;
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-text").textContent = file.name;
  go.disabled = false;
  say("");
}

function price(match) {
  const yuan = (v) => "¥" + Number(v).toFixed(2);
  if (match.price_min == null) return match.price_raw || "";
  let text = yuan(match.price_min);
  if (match.price_max != null && match.price_max !== match.price_min) text += "–" + yuan(match.price_max);
  return text;
}

function sales(match) {
  if (match.sales == null) return "";
  const words = { monthly: "sold / month", paid: "paid", received: "received", total: "sold" };
  return match.sales.toLocaleString() + " " + (words[match.sales_kind] || "sold");
}

function show(result) {
  grid.replaceChildren();
  for (const match of result.matches) {
    const node = card.content.firstElementChild.cloneNode(true);
    const link = node.querySelector(".link");
    if (match.detail_url) link.href = match.detail_url;
    const pic = node.querySelector(".pic");
    if (match.pic_url) pic.src = match.pic_url;
    pic.alt = match.title || "";
    node.querySelector(".title").textContent = match.title || String(match.num_iid);
    node.querySelector(".price").textContent = price(match);
    node.querySelector(".sales").textContent = sales(match);
    node.querySelector(".nick").textContent = match.seller_nick || "";
    node.querySelector(".tmall").hidden = match.is_tmall !== true;
    node.dataset.numIid = String(match.num_iid);
    grid.append(node);
  }
  const cost = result.calls === 0 ? "from the cache, no call" : result.calls + (result.calls === 1 ? " call" : " calls");
  say(result.matches.length + " matches (" + cost + ", " + Math.round(result.elapsed_ms) + " ms)");
}

async function search(event) {
  event.preventDefault();
  if (!photo) { say("Choose a photo first.", true); return; }
  const body = new FormData();
  body.append("photo", photo, photo.name || "photo.jpg");
  const cat = $("cat").value.trim();
  if (cat) body.append("cat", cat);
  body.append("pages", $("pages").value);
  go.disabled = true;
  say("Searching…");
  try {
    const response = await fetch("search", { method: "POST", body });
    const result = await response.json();
    if (response.ok) {
      show(result);
    } else {
      const retry = response.headers.get("Retry-After");
      say(result.message + (retry ? " (try again in " + retry + " s)" : ""), true);
    }
  } catch (error) {
    say("The service did not answer: " + error.message, true);
  } finally {
    go.disabled = false;
  }
}

photoInput.addEventListener("change", () => choose(photoInput.files[0]));
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => { event.preventDefault(); choose(event.dataTransfer.files[0]); });
form.addEventListener("submit", search);
