// The admin API client of the dashboard: the session (a bearer token kept in
// sessionStorage — this tab only, gone when it closes; never localStorage) and REST
// calls. A 401 anywhere ends the session: the page goes back to the login form with the
// API's message.

const TOKEN_KEY = "fleetd.token";
// Relative to the page (…/admin/), so a proxy that mounts fleetd under a prefix works.
export const API_BASE = new URL("../api/v1/admin/jobs/", document.baseURI);

/** An error answer of the API: {"error": {"code", "message", "details"}}. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** "data.to: must be an e-mail address; …" when the API listed field errors. */
  describe() {
    const fields = this.details?.fields;
    if (Array.isArray(fields) && fields.length) {
      return fields.map((f) => `${f.path ?? f.field ?? "?"}: ${f.message ?? ""}`).join("; ");
    }
    if (fields && typeof fields === "object") {
      return Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; ");
    }
    return this.message;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** The token's claims, decoded for display only (the API verifies the signature). */
export function claims(token) {
  const part = String(token).split(".")[1];
  if (!part) throw new Error("this is not a JWT (expected three dot-separated parts)");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const payload = JSON.parse(new TextDecoder().decode(bytes));
  if (!payload || typeof payload !== "object") throw new Error("the token's payload is not an object");
  return payload;
}

function unauthorized(message) {
  window.dispatchEvent(new CustomEvent("fleetd:unauthorized", { detail: message }));
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page; the status says enough
  }
  const e = body?.error;
  if (e && typeof e === "object") {
    return new ApiError(response.status, String(e.code ?? "error"), String(e.message ?? ""), e.details ?? {});
  }
  return new ApiError(response.status, `http_${response.status}`, `HTTP ${response.status} ${response.statusText}`);
}

/** Call the API: `api("GET", "status/pending", {query: {limit: 50}})` → the JSON body. */
export async function api(method, path, { body, query } = {}) {
  const url = new URL(path, API_BASE);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (exc) {
    throw new ApiError(0, "network", `fleetd is unreachable (${exc.message})`);
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) unauthorized(error.message);
    throw error;
  }
  return response.json();
}

/** Fetch a file with the bearer token and hand it to the browser as a download. */
export async function download(path, fallbackName) {
  const response = await fetch(new URL(path, API_BASE), {
    headers: { Authorization: `Bearer ${session.token}` },
    credentials: "omit",
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) unauthorized(error.message);
    throw error;
  }
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="([^"]+)"/i.exec(disposition);
  const name = utf8 ? decodeURIComponent(utf8[1]) : plain ? plain[1] : fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
