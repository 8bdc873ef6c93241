// The API's reference page: renders /api/v1/openapi.json (no inline script: the page's
// Content-Security-Policy allows only this file).
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// `code` spans of a description as <code>, the rest as text (never as HTML).
function prose(text) {
  const span = el("span");
  String(text || "").split("`").forEach((part, index) => {
    span.append(index % 2 ? el("code", {}, part) : part);
  });
  return span;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.type === "array") return schemaName(schema.items) + "[]";
  return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
}

function parameters(operation) {
  const list = operation.parameters || [];
  if (!list.length) return null;
  const rows = list.map((p) =>
    el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in + (p.required ? ", required" : "")),
      el("td", {}, prose(p.description))));
  return el("div", {}, el("h3", {}, "Parameters"),
    el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "")), ...rows));
}

function content(body) {
  return Object.entries((body && body.content) || {})
    .map(([type, media]) => el("div", {}, el("code", {}, type), " ", schemaName(media.schema)));
}

function requestBody(operation) {
  if (!operation.requestBody) return null;
  return el("div", {}, el("h3", {}, "Body"), ...content(operation.requestBody));
}

function responses(operation) {
  const rows = Object.entries(operation.responses || {}).map(([status, response]) =>
    el("tr", {}, el("td", {}, el("strong", {}, status)),
      el("td", {}, prose(response.description), ...content(response),
        ...Object.keys(response.headers || {}).map((name) => el("div", { class: "muted" }, "header " + name)))));
  return el("div", {}, el("h3", {}, "Responses"), el("table", {}, ...rows));
}

function security(operation, doc) {
  const schemes = (operation.security || doc.security || [])
    .flatMap((requirement) => Object.keys(requirement));
  return schemes.length ? el("p", { class: "muted" }, "Auth: " + schemes.join(" or ")) : null;
}

function operationView(doc, path, method, operation) {
  return el("details", { id: (operation.operationId || method + path) },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()),
      el("code", {}, path), " ", el("span", { class: "muted" }, prose(operation.summary))),
    operation.description ? el("p", {}, prose(operation.description)) : null,
    security(operation, doc), parameters(operation), requestBody(operation), responses(operation));
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  const summary = document.getElementById("summary");
  summary.replaceChildren(prose(doc.info.description), " OpenAPI " + doc.openapi + ": ",
    el("a", { href: "/api/v1/openapi.json" }, "/api/v1/openapi.json"));
  // The document's own order of tags (customers first), then any other.
  const byTag = new Map((doc.tags || []).map((tag) => [tag.name, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operationView(doc, path, method, item[method]));
    }
  }
  const main = document.getElementById("operations");
  const toc = el("ul");
  for (const [tag, views] of byTag) {
    if (!views.length) continue;
    toc.append(el("li", {}, el("a", { href: "#tag-" + tag }, tag), " (" + views.length + ")"));
    main.append(el("h2", { id: "tag-" + tag }, tag), ...views);
  }
  document.getElementById("toc").replaceChildren(toc);
}

fetch("/api/v1/openapi.json")
  .then((answer) => {
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    return answer.json();
  })
  .then(render)
  .catch((error) => {
    document.getElementById("summary").replaceChildren(
      el("span", { class: "error" }, "Could not load the document: " + error.message));
  });
