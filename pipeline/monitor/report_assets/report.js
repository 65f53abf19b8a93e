// The run report's pages: each page's seeds are a JSON block, parsed when the page is shown.
// Every value from the datasets goes in as text (textContent) or as a checked http(s) URL.
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("report-meta").textContent);
  var main = document.getElementById("seeds");
  var pagers = Array.prototype.slice.call(document.querySelectorAll(".pager"));
  var parsed = {};
  var current = 0;
  var pendingCharts = [];

  function pageData(k) {
    if (!(k in parsed)) {
      var block = document.getElementById("page-" + k);
      parsed[k] = block ? JSON.parse(block.textContent) : [];
    }
    return parsed[k];
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function webUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function picture(src, alt, className) {
    var img = el("img", className);
    img.alt = alt;
    img.loading = "lazy";
    img.decoding = "async";
    img.referrerPolicy = "no-referrer";  // the platform's CDN refuses pictures linked from other sites
    img.addEventListener("error", function () { img.classList.add("broken"); img.title = "picture not reachable"; });
    img.src = src;
    return img;
  }

  function matchCard(m) {
    // [position, title, pic_url, detail_url, shop, is_tmall, price, sales]
    var link = webUrl(m[3]);
    var card = el(link ? "a" : "div", "match");
    if (link) { card.href = link; card.target = "_blank"; card.rel = "noopener noreferrer"; }
    var pic = webUrl(m[2]) || (typeof m[2] === "string" && m[2].indexOf("data:image/") === 0 ? m[2] : null);
    if (pic) card.appendChild(picture(pic, m[1], "match-pic"));
    var title = el("div", "title");
    if (m[5]) title.appendChild(el("span", "tmall", "天猫 Tmall"));
    title.appendChild(document.createTextNode(m[1]));
    card.appendChild(title);
    card.appendChild(el("div", "price", m[6]));
    card.appendChild(el("div", "sales", m[7]));
    var shop = el("div", "shop", m[4]);
    var views = m[8] && m[8].length && (m[8].length > 1 || m[8][0] !== 1) ? " (view " + m[8].join("+") + ")" : "";
    shop.insertBefore(el("span", "pos", "#" + m[0] + views + " "), shop.firstChild);
    card.appendChild(shop);
    return card;
  }

  function seedSection(seed, index) {
    var section = el("section", "seed");
    section.id = "seed-" + index;
    var head = el("div", "seed-head");
    var photo = webUrl(seed.photo) || (typeof seed.photo === "string" && seed.photo.indexOf("data:image/") === 0 ? seed.photo : null);
    if (photo) head.appendChild(picture(photo, "seed photo " + seed.id, "seed-photo"));
    else head.appendChild(el("div", "nophoto", "photo not available: " + (seed.nophoto || "unknown")));
    (seed.views || []).forEach(function (view) {  // the seed's other photos of the product, beside the first
      var src = webUrl(view.photo) || (typeof view.photo === "string" && view.photo.indexOf("data:image/") === 0 ? view.photo : null);
      if (src) head.appendChild(picture(src, "seed " + seed.id + " view " + view.v, "seed-photo seed-view"));
    });
    head.appendChild(el("h2", null, index + ". " + seed.id));
    var status = el("div", "status");
    status.appendChild(el("b", null, seed.st));
    var facts = [];
    if (seed.tot !== null && seed.tot !== undefined) facts.push(seed.tot + " results");
    facts.push(seed.pages + " pages, " + seed.found + " hits");
    status.appendChild(document.createTextNode(" · " + facts.join(" · ")));
    head.appendChild(status);
    if (seed.st !== "ok" || seed.msg) head.appendChild(el("div", "reason", (seed.code ? seed.code + ": " : "") + (seed.msg || "")));
    var chart = el("div", "chart");
    chart.dataset.index = String(index);
    chart.points = seed.pts;
    head.appendChild(chart);
    section.appendChild(head);
    var grid = el("div", "matches");
    seed.m.forEach(function (m) { grid.appendChild(matchCard(m)); });
    if (!seed.m.length) grid.appendChild(el("p", "status", seed.st === "ok" ? "no matches" : "no matches: not searched to the end"));
    section.appendChild(grid);
    if (seed.o && seed.o.length) section.appendChild(offersList(seed.o));
    observe(chart);
    return section;
  }

  function offersList(offers) {
    // [listings, sellers, spread, [[title, pic_url, detail_url, shop, price], ...] cheapest first]
    var box = el("div", "offers");
    box.appendChild(el("h3", null, "Same product, several sellers"));
    offers.forEach(function (offer) {
      var group = el("div", "offer");
      group.appendChild(el("div", "spread", offer[1] + " sellers, " + offer[0] + " listings: " + offer[2]));
      var row = el("div", "offer-listings");
      offer[3].forEach(function (l, i) {
        var link = webUrl(l[2]);
        var card = el(link ? "a" : "div", "offer-listing" + (i === 0 ? " cheapest" : ""));
        if (link) { card.href = link; card.target = "_blank"; card.rel = "noopener noreferrer"; }
        var pic = webUrl(l[1]) || (typeof l[1] === "string" && l[1].indexOf("data:image/") === 0 ? l[1] : null);
        if (pic) card.appendChild(picture(pic, l[0], "offer-pic"));
        card.appendChild(el("div", "price", (i === 0 ? "cheapest " : "") + l[4]));
        card.appendChild(el("div", "shop", l[3]));
        row.appendChild(card);
      });
      group.appendChild(row);
      box.appendChild(group);
    });
    return box;
  }

  // -- plots: drawn when scrolled into view, once the Vega bundle (at the end of the file) has loaded

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); drawChart(entry.target); }
    });
  }, { rootMargin: "200px" }) : null;

  function observe(chart) {
    if (observer) observer.observe(chart); else drawChart(chart);
  }

  function drawChart(chart) {
    var points = (chart.points || []).filter(function (p) { return p[0] > 0; });
    if (!points.length) { chart.appendChild(el("div", "empty", "no prices to plot")); return; }
    if (!window.vegaEmbed) { pendingCharts.push(chart); return; }
    var values = points.map(function (p, i) { return { price: p[0], sales: p[1] === null ? 0 : p[1], rank: i < 8 ? "top 8" : "others" }; });
    var spec = {
      width: 120, height: 100, background: null,
      data: { values: values },
      mark: { type: "circle", size: 24, opacity: 0.7 },
      encoding: {
        x: { field: "price", type: "quantitative", scale: { type: "log" }, title: "price ¥ (log)", axis: { tickCount: 3 } },
        y: { field: "sales", type: "quantitative", scale: { type: "symlog" }, title: "sales", axis: { tickCount: 3 } },
        color: { field: "rank", type: "nominal", scale: { domain: ["top 8", "others"], range: ["#ff5000", "#9aa0a6"] }, legend: null },
        tooltip: [{ field: "price", format: ",.2f" }, { field: "sales", format: "," }]
      },
      config: { axis: { labelFontSize: 9, titleFontSize: 9 }, view: { stroke: null } }
    };
    window.vegaEmbed(chart, spec, { actions: false, renderer: "svg" }).catch(function (error) {
      chart.appendChild(el("div", "empty", "plot failed: " + error));
    });
  }

  window.reportChartsReady = function () { pendingCharts.splice(0).forEach(drawChart); };

  // -- pages

  function renderPager(pager) {
    pager.replaceChildren();
    if (meta.pages <= 1) { pager.appendChild(el("span", "status", meta.seeds + " seeds")); return; }
    var prev = el("button", null, "‹ previous");
    prev.disabled = current <= 1;
    prev.addEventListener("click", function () { show(current - 1, true); });
    var next = el("button", null, "next ›");
    next.disabled = current >= meta.pages;
    next.addEventListener("click", function () { show(current + 1, true); });
    var select = el("select");
    select.setAttribute("aria-label", "page");
    for (var k = 1; k <= meta.pages; k++) {
      var first = (k - 1) * meta.page_seeds + 1;
      var option = el("option", null, "seeds " + first + "–" + Math.min(meta.seeds, k * meta.page_seeds));
      option.value = String(k);
      if (k === current) option.selected = true;
      select.appendChild(option);
    }
    select.addEventListener("change", function () { show(Number(select.value), true); });
    pager.appendChild(prev);
    pager.appendChild(select);
    pager.appendChild(next);
    pager.appendChild(el("span", "status", "page " + current + " of " + meta.pages + " · " + meta.seeds + " seeds"));
  }

  function show(k, scroll) {
    k = Math.max(1, Math.min(meta.pages, k));
    if (k !== 1 && document.readyState === "loading") {  // its data is further down the file
      document.addEventListener("DOMContentLoaded", function () { show(k, scroll); });
      return;
    }
    if (k !== current) {
      current = k;
      var fragment = document.createDocumentFragment();
      var offset = (k - 1) * meta.page_seeds;
      pageData(k).forEach(function (seed, i) { fragment.appendChild(seedSection(seed, offset + i + 1)); });
      main.replaceChildren(fragment);
      pagers.forEach(renderPager);
    }
    if (scroll) main.scrollIntoView();
  }

  function fromHash() {
    var match = /^#seed-(\d+)$/.exec(location.hash);
    if (!match) return false;
    var index = Number(match[1]);
    show(Math.ceil(index / meta.page_seeds), false);
    var target = document.getElementById("seed-" + index);
    if (target) target.scrollIntoView();
    return true;
  }

  window.addEventListener("hashchange", fromHash);
  if (!fromHash()) show(1, false);
})();
