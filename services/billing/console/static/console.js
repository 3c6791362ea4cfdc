// The billing console. Everything it shows comes from the billing read API, fetched with the
// bearer token the page was opened with; every value is written as text (textContent,
// setAttribute), never as markup. The token is kept in sessionStorage and sent only in the
// Authorization header: it never appears in a URL the page requests.
"use strict";

(() => {
  const TOKEN_KEY = "billing.console.token";
  const PAGE_SIZE = 20;
  const CHART_DAYS = 90;
  const MONTHS_TO_PICK = 24;
  const DAY_MS = 86400000;
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const MONTH_NAMES = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
  ];
  const SVG = "http://www.w3.org/2000/svg";

  const session = { token: null };
  const byId = (id) => document.getElementById(id);

  class SignedOut extends Error {}

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // ---- the token ---------------------------------------------------------------------------

  /** Whether the address bar holds a link's token (`#token=...`, even an empty one). */
  function linkInAddress() {
    return new URLSearchParams(window.location.hash.slice(1)).has("token");
  }

  /**
   * The token from the fragment (then removed from the address bar), or the one kept. A
   * link's token replaces the one kept, and an empty one forgets it: the tab then acts
   * for the link it was last given, never for an earlier one.
   */
  function takeToken() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    if (fragment.has("token")) {
      const token = fragment.get("token");
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
      } else {
        sessionStorage.removeItem(TOKEN_KEY);
      }
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  /**
   * Another link opened in this tab changes only the fragment, and the browser keeps the
   * page: every figure shown so far belongs to the token the page started with. They are
   * dropped at once (answers still on their way are then ignored, see `api`), the new
   * token is kept, and the page starts again from nothing under it.
   */
  function followNewLink() {
    if (!linkInAddress()) {
      return;
    }
    session.token = null;
    const board = byId("console");
    if (board) {
      board.hidden = true;
      board.replaceChildren();
    }
    byId("company").textContent = "";
    takeToken();
    window.location.reload();
  }

  /** The token's claims, read only to show the company and to notice expiry early. */
  function claimsOf(token) {
    const parts = token.split(".");
    if (parts.length !== 3) {
      return null;
    }
    try {
      const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)));
      return claims !== null && typeof claims === "object" ? claims : null;
    } catch {
      return null;
    }
  }

  /** Forget the token, drop every figure already shown, and say why. */
  function signOut(title, text) {
    sessionStorage.removeItem(TOKEN_KEY);
    session.token = null;
    const board = byId("console");
    if (board) {
      board.hidden = true;
      board.replaceChildren();
    }
    byId("company").textContent = "";
    showNotice(title, text);
  }

  function showNotice(title, text) {
    byId("loading").hidden = true;
    byId("notice-title").textContent = title;
    byId("notice-text").textContent = text;
    byId("notice").hidden = false;
  }

  const expired = () =>
    signOut(
      "Your link has expired",
      "For your company's safety a billing link works for a limited time. " +
        "Ask for a new link and open it again.",
    );

  // ---- the API -----------------------------------------------------------------------------

  async function api(path, params = {}, accept = "application/json") {
    if (!session.token) {
      throw new SignedOut();
    }
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) {
        url.searchParams.set(name, String(value));
      }
    }
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${session.token}`, Accept: accept },
      cache: "no-store",
      credentials: "omit",
    });
    if (!session.token) {
      throw new SignedOut();
    }
    if (response.status === 401) {
      const detail = await detailOf(response);
      signOut(
        "Your session has ended",
        `The billing service did not accept this link (${detail}). Ask for a new link and open it again.`,
      );
      throw new SignedOut(detail);
    }
    if (!response.ok) {
      throw new ApiError(response.status, await detailOf(response));
    }
    return response;
  }

  async function getJson(path, params) {
    return (await api(path, params)).json();
  }

  async function detailOf(response) {
    try {
      const body = await response.json();
      if (body && typeof body.detail === "string") {
        return body.detail;
      }
    } catch {
      // not JSON: the status says enough
    }
    return `HTTP ${response.status}`;
  }

  /** What to say where a part could not be loaded (its API answered with an error). */
  function reason(error) {
    if (error instanceof ApiError && error.status === 404) {
      return "not available on this billing service";
    }
    return error instanceof Error ? error.message : String(error);
  }

  // ---- money, exactly as written by the API (4-place decimal strings) -----------------------

  const MONEY = /^(-?)(\d+)\.(\d{4})$/;

  function units(money) {
    const parts = MONEY.exec(String(money));
    if (!parts) {
      return 0n;
    }
    const value = BigInt(parts[2]) * 10000n + BigInt(parts[3]);
    return parts[1] ? -value : value;
  }

  function money(value) {
    const negative = value < 0n;
    const size = negative ? -value : value;
    const fraction = (size % 10000n).toString().padStart(4, "0");
    return `${negative ? "-" : ""}${size / 10000n}.${fraction}`;
  }

  // Each answer with money says its currency (ISO 4217). An amount is written in it as this
  // browser's locale writes money, with all 4 places: Intl formats the decimal string itself,
  // exactly (no float on the way).
  const formats = new Map();

  function formatFor(currency) {
    if (!formats.has(currency)) {
      let format = null;
      try {
        format = new Intl.NumberFormat(undefined, {
          style: "currency",
          currency,
          minimumFractionDigits: 4,
          maximumFractionDigits: 4,
        });
      } catch {
        // a code this browser cannot write: the amount, then the code
      }
      formats.set(currency, format);
    }
    return formats.get(currency);
  }

  /** An amount of the API (a 4-place decimal string) in `currency`, for people to read. */
  function inCurrency(amount, currency) {
    if (amount === null || amount === undefined) {
      return "—";
    }
    const text = String(amount);
    if (!MONEY.test(text) || typeof currency !== "string" || !currency) {
      return text; // an API that names no currency: the amount as it wrote it
    }
    const format = formatFor(currency);
    return format ? format.format(text) : `${text} ${currency}`;
  }

  /** Show an amount in `element`; the API's own figure stays on it (`data-amount`). */
  function showMoney(element, amount, currency) {
    element.textContent = inCurrency(amount, currency);
    if (amount === null || amount === undefined) {
      element.removeAttribute("data-amount");
    } else {
      element.setAttribute("data-amount", String(amount));
    }
    if (typeof currency === "string" && currency) {
      element.setAttribute("data-currency", currency);
    }
    return element;
  }

  // ---- dates (UTC, as billing counts them) ---------------------------------------------------

  const dayOf = (date) => new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const isoDay = (date) => date.toISOString().slice(0, 10);
  const rfc3339 = (date) => date.toISOString().replace(/\.\d{3}Z$/, "Z");
  const periodOf = (date) => date.toISOString().slice(0, 7);

  function monthName(period) {
    const [year, month] = period.split("-");
    return `${MONTH_NAMES[Number(month) - 1]} ${year}`;
  }

  function when(value) {
    if (!value) {
      return "—";
    }
    const date = new Date(value);
    return Number.isNaN(date.getTime())
      ? String(value)
      : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  // ---- building blocks -----------------------------------------------------------------------

  function cell(value, className) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "—" : String(value);
    if (className) {
      td.className = className;
    }
    return td;
  }

  function moneyCell(amount, currency) {
    return showMoney(cell(null, "num money"), amount, currency);
  }

  /** A job as a person reads it: its title when billing knows one, and always its id. */
  function jobCell(jobId, title) {
    const td = document.createElement("td");
    td.className = "job";
    if (typeof title === "string" && title) {
      const name = document.createElement("span");
      name.className = "job-title";
      name.setAttribute("data-testid", "job-title");
      name.textContent = title;
      td.append(name);
    }
    const id = document.createElement("span");
    id.className = "job-id";
    id.setAttribute("data-testid", "job-id");
    id.textContent = jobId === null || jobId === undefined ? "—" : String(jobId);
    td.append(id);
    return td;
  }

  function row(cells, testId) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    if (testId) {
      tr.setAttribute("data-testid", testId);
    }
    return tr;
  }

  function fill(table, rows, emptyText) {
    const body = table.tBodies[0];
    if (rows.length) {
      body.replaceChildren(...rows);
      return;
    }
    const td = cell(emptyText, "none");
    td.colSpan = table.tHead.rows[0].cells.length;
    body.replaceChildren(row([td]));
  }

  function markUnavailable(element, what, error) {
    element.textContent = "Unavailable";
    element.classList.add("unavailable");
    element.title = `${what}: ${reason(error)}`;
  }

  function button(text) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    return element;
  }

  /**
   * Previous / Next over a keyset-paged list. `fetchPage(cursor)` gets a page, `render(page)`
   * shows it and returns its next cursor. The cursors seen are kept to walk back.
   */
  function paged(nav, fetchPage, render) {
    const cursors = [null];
    let index = 0;
    let following = null;
    const previousButton = button("Previous");
    const nextButton = button("Next");
    const where = document.createElement("span");
    nav.replaceChildren(previousButton, where, nextButton);

    function shown(page, at) {
      index = at;
      cursors.length = at + 1;
      following = render(page);
      previousButton.disabled = at === 0;
      nextButton.disabled = !following;
      where.textContent = `Page ${at + 1}`;
      nav.hidden = at === 0 && !following;
    }

    async function go(at, cursor) {
      previousButton.disabled = true;
      nextButton.disabled = true;
      try {
        const page = await fetchPage(cursor);
        cursors[at] = cursor;
        shown(page, at);
      } catch (error) {
        if (error instanceof SignedOut) {
          return;
        }
        where.textContent = `This page could not be loaded: ${reason(error)}`;
        previousButton.disabled = index === 0;
        nextButton.disabled = !following;
      }
    }

    previousButton.addEventListener("click", () => go(index - 1, cursors[index - 1]));
    nextButton.addEventListener("click", () => go(index + 1, following));
    return { first: (page) => shown(page, 0) };
  }

  function svg(name, attributes = {}, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) {
      element.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  // ---- the parts of the page -----------------------------------------------------------------

  function chartRange(now) {
    const today = dayOf(now);
    return {
      from: new Date(today.getTime() - (CHART_DAYS - 1) * DAY_MS),
      to: new Date(today.getTime() + DAY_MS),
    };
  }

  function monthRange(now) {
    const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const to = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    return { from, to };
  }

  function renderJobs(summary) {
    const jobs = Array.isArray(summary.jobs) ? summary.jobs : [];
    fill(
      byId("jobs-table"),
      jobs.map((job) =>
        row(
          [
            jobCell(job.jobId, job.jobTitle),
            cell(job.generations, "num secondary"),
            cell(job.questionCount, "num"),
            moneyCell(job.cost, summary.currency),
            cell(when(job.lastUsedAt), "secondary"),
          ],
          "job-row",
        ),
      ),
      "No job has been billed yet.",
    );
    return summary.nextCursor ?? null;
  }

  function draftsRenderer(tableId, emptyText, dateField) {
    return (page) => {
      const drafts = Array.isArray(page.drafts) ? page.drafts : [];
      fill(
        byId(tableId),
        drafts.map((draft) =>
          row(
            [
              cell(draft.draftJobId, "id"),
              cell(draft.questionCount, "num"),
              moneyCell(draft.cost, page.currency),
              cell(when(draft[dateField]), "secondary"),
            ],
            "draft-row",
          ),
        ),
        emptyText,
      );
      return page.nextCursor ?? null;
    };
  }

  function renderSummaryFigures(summary) {
    const drafts = summary.drafts ?? {};
    byId("drafts-waiting").textContent = String(drafts.count ?? 0);
    byId("drafts-note").textContent = drafts.count
      ? `holding ${inCurrency(drafts.cost, summary.currency)} of usage until their jobs are saved`
      : "none is waiting for its job";
    const totals = summary.totals ?? {};
    const nothing =
      !totals.generations && (summary.jobs ?? []).length === 0 && !drafts.count;
    byId("empty").hidden = !nothing;
  }

  function renderBudget(budget) {
    const remaining = byId("budget-remaining");
    const note = byId("budget-note");
    if (budget.monthlyLimit === null || budget.monthlyLimit === undefined) {
      remaining.textContent = "No budget set";
      remaining.classList.add("words");
      note.textContent = "There is no monthly limit for this company.";
      return;
    }
    remaining.classList.remove("words");
    showMoney(remaining, budget.remaining, budget.currency);
    const over = units(budget.remaining) < 0n;
    remaining.classList.toggle("over", over);
    const limit = inCurrency(budget.monthlyLimit, budget.currency);
    note.textContent = over ? `over the monthly limit of ${limit}` : `of a monthly limit of ${limit}`;
  }

  /** The daily chart, drawn at the width it is shown (again when that changes). */
  const chart = { range: null, daily: null, width: 0 };

  function drawChart() {
    const element = byId("daily-chart");
    const width = element ? Math.round(element.clientWidth) : 0;
    if (!chart.daily || width === 0 || width === chart.width) {
      return;
    }
    chart.width = width;
    renderChart(element, Math.max(width, 280), chart.range, chart.daily);
  }

  function renderChart(element, width, range, daily) {
    const currency = daily.currency;
    const byDate = new Map((daily.days ?? []).map((day) => [day.date, day]));
    const days = [];
    for (let i = 0; i < CHART_DAYS; i += 1) {
      const date = isoDay(new Date(range.from.getTime() + i * DAY_MS));
      days.push(byDate.get(date) ?? { date, generations: 0, questionCount: 0, cost: "0.0000" });
    }
    let highest = 0n;
    let highestText = "0.0000";
    let total = 0n;
    let generations = 0;
    for (const day of days) {
      const cost = units(day.cost);
      total += cost;
      generations += Number(day.generations) || 0;
      if (cost > highest) {
        highest = cost;
        highestText = String(day.cost);
      }
    }

    const height = 240;
    const left = 16 + 7 * Math.max(inCurrency(highestText, currency).length, 6);
    const right = 10;
    const top = 14;
    const bottom = 30;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const slot = plotWidth / CHART_DAYS;
    const first = isoDay(range.from);
    const last = isoDay(new Date(range.to.getTime() - DAY_MS));
    const picture = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": `Daily spend from ${first} to ${last}: ${inCurrency(money(total), currency)} in all`,
    });
    picture.append(svg("title", {}, `Daily spend from ${first} to ${last}`));

    const marks = highest > 0n ? [[0, "0.0000"], [0.5, money(highest / 2n)], [1, highestText]] : [[0, "0.0000"]];
    for (const [fraction, label] of marks) {
      const y = top + plotHeight * (1 - fraction);
      picture.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
      picture.append(
        svg("text", { x: left - 8, y: y + 4, class: "axis", "text-anchor": "end" }, inCurrency(label, currency)),
      );
    }
    days.forEach((day, i) => {
      const cost = units(day.cost);
      const x = left + i * slot;
      if (cost > 0n) {
        const barHeight = Math.max((Number((cost * 100000n) / highest) / 100000) * plotHeight, 1);
        const bar = svg("rect", {
          x: x + 1,
          y: top + plotHeight - barHeight,
          width: Math.max(slot - 2, 1),
          height: barHeight,
          class: "bar",
          "data-date": day.date,
          "data-cost": day.cost,
        });
        bar.append(
          svg(
            "title",
            {},
            `${day.date}: ${inCurrency(day.cost, currency)} ` +
              `(${day.generations} generations, ${day.questionCount} questions)`,
          ),
        );
        picture.append(bar);
      }
      const dayOfMonth = Number(day.date.slice(8, 10));
      if (dayOfMonth === 1 || (i === 0 && dayOfMonth < 20)) {
        const label = `${MONTHS[Number(day.date.slice(5, 7)) - 1]} ${dayOfMonth}`;
        picture.append(svg("line", { x1: x, x2: x, y1: top + plotHeight, y2: top + plotHeight + 5, class: "tick" }));
        picture.append(svg("text", { x, y: height - 8, class: "axis" }, label));
      }
    });
    if (highest === 0n) {
      picture.append(
        svg("text", { x: left + plotWidth / 2, y: top + plotHeight / 2, class: "nothing", "text-anchor": "middle" },
          `Nothing spent in these ${CHART_DAYS} days`),
      );
    }
    element.replaceChildren(picture);
    byId("daily-total").textContent =
      `${inCurrency(money(total), currency)} over ${CHART_DAYS} days, ` +
      `${generations} generation${generations === 1 ? "" : "s"}.`;
  }

  /** Where a month's statement is: in the console, or as its printable page. */
  function statementAddress(period, print) {
    const query = new URLSearchParams({ statement: period });
    if (print) {
      query.set("view", "print");
    }
    return `${window.location.pathname}?${query}`;
  }

  /** A statement's credits applied and amount due, when its API answers with them. */
  function creditsOf(statement) {
    const credits = statement.credits;
    return {
      applied: credits && typeof credits === "object" ? credits.applied ?? null : null,
      amountDue: statement.amountDue ?? null,
    };
  }

  function renderStatement(statement) {
    const currency = statement.currency;
    const status = byId("statement-status");
    const closed = statement.status === "closed";
    status.textContent = closed ? `Closed ${when(statement.closedAt)}` : "Open: may still change";
    status.className = `badge ${closed ? "closed" : "open"}`;
    const printable = byId("statement-print");
    printable.href = statementAddress(statement.period, true);
    printable.hidden = !closed;
    byId("statement-print-note").hidden = closed;
    const totals = statement.totals ?? {};
    const late = statement.late ?? {};
    const drafts = statement.drafts ?? {};
    const adjustments = Array.isArray(statement.adjustments) ? statement.adjustments : [];
    showMoney(byId("statement-usage"), totals.cost, currency);
    byId("statement-questions").textContent = String(totals.questionCount ?? "—");
    const lateCount = late.count ?? 0;
    byId("statement-late").textContent = lateCount
      ? `${inCurrency(late.cost, currency)} (${lateCount} late)`
      : "none";
    const draftCount = drafts.count ?? 0;
    byId("statement-drafts").textContent = draftCount
      ? `${inCurrency(drafts.cost, currency)} on ${draftCount} draft${draftCount === 1 ? "" : "s"}`
      : "none";
    byId("statement-adjustment-count").textContent = String(adjustments.length);
    showMoney(byId("statement-total"), statement.total, currency);
    const { applied, amountDue } = creditsOf(statement);
    byId("statement-credits-fact").hidden = applied === null;
    byId("statement-due-fact").hidden = amountDue === null;
    showMoney(byId("statement-credits"), applied, currency);
    showMoney(byId("statement-amount-due"), amountDue, currency);
    fill(
      byId("statement-adjustments"),
      adjustments.map((adjustment) =>
        row(
          [
            cell(when(adjustment.createdAt), "secondary"),
            cell(adjustment.reason, "text"),
            moneyCell(adjustment.amount, currency),
          ],
          "adjustment-row",
        ),
      ),
      "No adjustments.",
    );
  }

  function renderStatementLines(statement) {
    const lines = Array.isArray(statement.lines) ? statement.lines : [];
    fill(
      byId("statement-lines"),
      lines.map((line) =>
        row(
          [jobCell(line.jobId, line.jobTitle), cell(line.questionCount, "num"), moneyCell(line.cost, statement.currency)],
          "statement-line",
        ),
      ),
      "No job was billed in this month.",
    );
    return statement.nextCursor ?? null;
  }

  function statementUnavailable(error) {
    const status = byId("statement-status");
    status.textContent = `Statement unavailable: ${reason(error)}`;
    status.className = "badge unavailable";
    for (const id of ["statement-usage", "statement-questions", "statement-late", "statement-drafts",
      "statement-adjustment-count", "statement-total"]) {
      byId(id).textContent = "—";
    }
    for (const id of ["statement-print", "statement-print-note", "statement-credits-fact", "statement-due-fact"]) {
      byId(id).hidden = true;
    }
    fill(byId("statement-lines"), [], "—");
    fill(byId("statement-adjustments"), [], "—");
    byId("statement-pager").hidden = true;
  }

  async function showStatement(period) {
    const path = `/api/billing/statements/${encodeURIComponent(period)}`;
    const fetchPage = (cursor) => getJson(path, { limit: PAGE_SIZE, cursor });
    byId("statement-period").value = period;
    byId("statement-body").setAttribute("aria-busy", "true");
    try {
      const statement = await fetchPage(null);
      if (byId("statement-period").value !== period) {
        return; // another month was picked meanwhile
      }
      renderStatement(statement);
      paged(byId("statement-pager"), fetchPage, renderStatementLines).first(statement);
      byId("statement-body").setAttribute("data-period", period);
    } catch (error) {
      if (error instanceof SignedOut) {
        return;
      }
      statementUnavailable(error);
      byId("statement-body").setAttribute("data-period", period);
    } finally {
      byId("statement-body")?.removeAttribute("aria-busy");
    }
  }

  function monthOption(period, text) {
    const option = document.createElement("option");
    option.value = period;
    option.textContent = text;
    return option;
  }

  /** The months to pick from (the last 24, and `asked` if it is older or later). */
  function monthChoices(now, asked) {
    const select = byId("statement-period");
    const options = [];
    for (let back = 0; back < MONTHS_TO_PICK; back += 1) {
      const period = periodOf(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - back, 1)));
      options.push(monthOption(period, back === 0 ? `${monthName(period)} (this month)` : monthName(period)));
    }
    if (asked && !options.some((option) => option.value === asked)) {
      options.push(monthOption(asked, monthName(asked)));
    }
    select.replaceChildren(...options);
    select.addEventListener("change", () => showStatement(select.value));
  }

  // ---- prepaid credits -----------------------------------------------------------------------

  // What each mode means for the company's usage, in a person's words.
  const MODES = {
    none: ["Not used", "Credits are not drawn: usage is invoiced as it is."],
    credit_then_invoice: [
      "Credits first, then invoiced",
      "Usage is drawn from credits first; what they do not cover is invoiced.",
    ],
    credit_only: [
      "Credits only",
      "Usage is drawn from credits only; a generation the balance cannot cover is refused.",
    ],
  };
  const ENTRY_KINDS = { grant: "Granted", draw: "Used", expiry: "Expired", void: "Voided" };
  const GRANT_KINDS = { purchased: "Purchased", promotional: "Promotional" };

  /** The reasons of the grants shown so far, by id: an entry names its grant by them. */
  const grantReasons = new Map();
  /** The month whose credit entries are shown (answers for another are dropped). */
  const creditEntries = { period: null };

  function grantState(grant) {
    if (grant.voidedAt) {
      return `voided ${when(grant.voidedAt)}`;
    }
    if (grant.expiredAt) {
      return `expired ${when(grant.expiredAt)}`;
    }
    // Past its expiry, before billing's next expiry pass has taken what it had left.
    if (grant.expiresAt && new Date(grant.expiresAt).getTime() <= Date.now()) {
      return `expired ${when(grant.expiresAt)}`;
    }
    if (grant.effectiveAt && new Date(grant.effectiveAt).getTime() > Date.now()) {
      return `starts ${when(grant.effectiveAt)}`;
    }
    return units(grant.remaining) === 0n ? "used up" : "active";
  }

  /** Something named by its reason (when known) above its id, as a job by its title. */
  function namedCell(className, id, name) {
    const td = document.createElement("td");
    td.className = className;
    if (typeof name === "string" && name) {
      const text = document.createElement("span");
      text.className = "item-name";
      text.textContent = name;
      td.append(text);
    }
    const ref = document.createElement("span");
    ref.className = "item-id";
    ref.textContent = id === null || id === undefined ? "—" : String(id);
    td.append(ref);
    return td;
  }

  function grantCell(grant) {
    const td = namedCell("grant", grant.grantId, grant.reason);
    const about = document.createElement("span");
    about.className = "item-about";
    const kind = GRANT_KINDS[grant.kind] ?? String(grant.kind);
    about.textContent = `${kind} · priority ${grant.priority} · ${grantState(grant)}`;
    td.insertBefore(about, td.lastChild);
    return td;
  }

  function dateCell(value, className) {
    const td = cell(value ? when(value) : "Never", className);
    if (value) {
      td.setAttribute("data-at", String(value));
    }
    return td;
  }

  function rememberGrants(page) {
    for (const grant of Array.isArray(page.grants) ? page.grants : []) {
      grantReasons.set(String(grant.grantId), String(grant.reason));
    }
  }

  function renderGrants(page) {
    rememberGrants(page);
    const grants = Array.isArray(page.grants) ? page.grants : [];
    fill(
      byId("credit-grants"),
      grants.map((grant) => {
        const tr = row(
          [
            grantCell(grant),
            showMoney(cell(null, "num money secondary granted"), grant.amount, page.currency),
            showMoney(cell(null, "num money remaining"), grant.remaining, page.currency),
            dateCell(grant.effectiveAt, "date secondary effective"),
            dateCell(grant.expiresAt, "date expires"),
          ],
          "credit-grant",
        );
        tr.setAttribute("data-grant-id", String(grant.grantId));
        return tr;
      }),
      "No credits have been granted to this company.",
    );
    return page.nextCursor ?? null;
  }

  function renderCredits(credits) {
    const currency = credits.currency;
    const balance = showMoney(byId("credits-balance"), credits.balance, currency);
    const mode = byId("credits-mode");
    const [name, meaning] = MODES[credits.mode] ?? [String(credits.mode), ""];
    mode.textContent = name;
    mode.setAttribute("data-mode", String(credits.mode));
    const threshold = byId("credits-threshold");
    const low =
      credits.lowBalanceThreshold !== null &&
      credits.lowBalanceThreshold !== undefined &&
      units(credits.balance) < units(credits.lowBalanceThreshold);
    if (credits.lowBalanceThreshold === null || credits.lowBalanceThreshold === undefined) {
      threshold.textContent = "No alert set";
      threshold.removeAttribute("data-amount");
    } else {
      showMoney(threshold, credits.lowBalanceThreshold, currency);
    }
    balance.classList.toggle("over", low);
    byId("credits-note").textContent = low
      ? `${meaning} The balance is below the low-balance alert.`
      : meaning;
  }

  function creditsUnavailable(error) {
    markUnavailable(byId("credits-balance"), "Credits", error);
    byId("credits-mode").textContent = "—";
    byId("credits-threshold").textContent = "—";
    byId("credits-note").textContent = `Credits are ${reason(error)}.`;
    fill(byId("credit-grants"), [], `Credits unavailable: ${reason(error)}`);
  }

  function renderEntries(page) {
    const entries = Array.isArray(page.entries) ? page.entries : [];
    fill(
      byId("credit-entries"),
      entries.map((entry) => {
        const what = cell(ENTRY_KINDS[entry.kind] ?? String(entry.kind), "kind");
        what.setAttribute("data-kind", String(entry.kind));
        const tr = row(
          [
            dateCell(entry.at, "date"),
            what,
            moneyCell(entry.amount, page.currency),
            namedCell("grant secondary", entry.grantId, grantReasons.get(String(entry.grantId))),
          ],
          "credit-entry",
        );
        tr.setAttribute("data-entry-id", String(entry.entryId));
        return tr;
      }),
      "No credit was granted, used, expired or voided in this month.",
    );
    return page.nextCursor ?? null;
  }

  /** The credit entries made in `period`, a page at a time; `known` names their grants. */
  async function showCreditEntries(period, known) {
    creditEntries.period = period;
    const [year, month] = period.split("-").map(Number);
    const range = {
      from: rfc3339(new Date(Date.UTC(year, month - 1, 1))),
      to: rfc3339(new Date(Date.UTC(year, month, 1))),
    };
    const table = byId("credit-entries");
    byId("credit-entries-title").textContent = `Credit entries made in ${monthName(period)}`;
    table.setAttribute("aria-busy", "true");
    const fetchPage = (cursor) =>
      getJson("/api/billing/credits/entries", { ...range, limit: PAGE_SIZE, cursor });
    // A page of a month no longer shown is not drawn over the one that is.
    const render = (page) => (creditEntries.period === period ? renderEntries(page) : null);
    try {
      const [first] = await Promise.all([fetchPage(null), known]);
      if (creditEntries.period !== period) {
        return;
      }
      paged(byId("credit-entries-pager"), fetchPage, render).first(first);
      table.setAttribute("data-period", period);
    } catch (error) {
      if (error instanceof SignedOut || creditEntries.period !== period) {
        return;
      }
      fill(table, [], `Credit entries unavailable: ${reason(error)}`);
      byId("credit-entries-pager").hidden = true;
      table.setAttribute("data-period", period);
    } finally {
      table.removeAttribute("aria-busy");
    }
  }

  // ---- the printable statement -------------------------------------------------------------

  const PERIOD = /^\d{4}-(0[1-9]|1[0-2])$/;
  const LINES_PER_REQUEST = 1000; // the most the statements API answers at once

  /** What the address asks for: `?statement=YYYY-MM` picks a month, `&view=print` its page. */
  function requestedView() {
    const query = new URLSearchParams(window.location.search);
    const period = query.get("statement");
    return {
      period: period && PERIOD.test(period) ? period : null,
      print: query.get("view") === "print",
    };
  }

  /** A statement with every line: a printed statement is whole, however many pages it has. */
  async function wholeStatement(period) {
    const path = `/api/billing/statements/${encodeURIComponent(period)}`;
    const first = await getJson(path, { limit: LINES_PER_REQUEST });
    const lines = Array.isArray(first.lines) ? [...first.lines] : [];
    let cursor = first.nextCursor ?? null;
    while (cursor) {
      const page = await getJson(path, { limit: LINES_PER_REQUEST, cursor });
      lines.push(...(Array.isArray(page.lines) ? page.lines : []));
      cursor = page.nextCursor ?? null;
    }
    return { ...first, lines, nextCursor: null };
  }

  function lastDayOf(period) {
    const [year, month] = period.split("-").map(Number);
    return isoDay(new Date(Date.UTC(year, month, 0)));
  }

  function documentRow(cells) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }

  function renderDocument(statement, company) {
    const currency = statement.currency;
    const period = statement.period;
    const closed = statement.status === "closed";
    const totals = statement.totals ?? {};
    const drafts = statement.drafts ?? {};
    const late = statement.late ?? {};
    const adjustments = Array.isArray(statement.adjustments) ? statement.adjustments : [];
    const lines = Array.isArray(statement.lines) ? statement.lines : [];

    document.title = company ? `Statement ${period} · Company ${company}` : `Statement ${period}`;
    byId("doc-title").textContent = `Statement for ${monthName(period)}`;
    byId("doc-period").textContent = `Billing period ${period}`;
    byId("doc-range").textContent = `${period}-01 to ${lastDayOf(period)} (UTC)`;
    byId("doc-company").textContent = company || "—";
    byId("doc-currency").textContent = typeof currency === "string" && currency ? currency : "—";
    byId("doc-status").textContent = closed
      ? `Closed ${when(statement.closedAt)}`
      : "Open: figures may still change";

    byId("doc-questions").textContent = `(${totals.questionCount ?? 0} questions)`;
    showMoney(byId("doc-usage"), totals.cost, currency);
    const adjusted = adjustments.reduce((sum, adjustment) => sum + units(adjustment.amount), 0n);
    byId("doc-adjustment-count").textContent = `(${adjustments.length})`;
    showMoney(byId("doc-adjustments-total"), money(adjusted), currency);
    showMoney(byId("doc-total"), statement.total, currency);
    const { applied, amountDue } = creditsOf(statement);
    byId("doc-credits-row").hidden = applied === null;
    byId("doc-credits-section").hidden = applied === null;
    showMoney(byId("doc-credits"), applied, currency);
    showMoney(byId("doc-credits-applied"), applied, currency);
    // Without credits the amount due is the total (the contract's `total` less credits applied).
    showMoney(byId("doc-amount-due"), amountDue ?? statement.total, currency);
    const notes = [];
    if (late.count) {
      notes.push(`Includes ${inCurrency(late.cost, currency)} of late usage (${late.count} generations of an earlier month, recorded after it closed).`);
    }
    if (drafts.count) {
      notes.push(`Includes ${inCurrency(drafts.cost, currency)} for ${drafts.questionCount} questions on ${drafts.count} job draft${drafts.count === 1 ? "" : "s"} not saved yet.`);
    }
    byId("doc-notes").textContent = notes.join(" ");

    const rows = lines.map((line) =>
      documentRow([jobCell(line.jobId, line.jobTitle), cell(line.questionCount, "num"), moneyCell(line.cost, currency)]),
    );
    if (drafts.count) {
      const label = cell(`Job drafts not saved yet (${drafts.count})`, "text");
      rows.push(documentRow([label, cell(drafts.questionCount, "num"), moneyCell(drafts.cost, currency)]));
    }
    fill(byId("doc-lines"), rows, "No usage in this month.");
    byId("doc-lines-questions").textContent = String(totals.questionCount ?? 0);
    showMoney(byId("doc-lines-total"), totals.cost, currency);

    fill(
      byId("doc-adjustments"),
      adjustments.map((adjustment) =>
        documentRow([
          cell(when(adjustment.createdAt)),
          cell(adjustment.reason, "text"),
          moneyCell(adjustment.amount, currency),
        ]),
      ),
      "No adjustments.",
    );
    byId("doc-foot").textContent = closed
      ? `This statement was closed on ${when(statement.closedAt)} and no longer changes. ` +
        `Amounts in ${currency || "the billing currency"}, to 4 decimal places.`
      : `This month is still open: its figures may change until it is closed.`;
  }

  /** The printable page of one month's statement, instead of the console. */
  async function startPrintView(period, company) {
    document.body.classList.add("print-view");
    byId("print-back").href = statementAddress(period, false);
    byId("print-now").addEventListener("click", () => window.print());
    let statement;
    try {
      statement = await wholeStatement(period);
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        showNotice("This statement could not be loaded", reason(error));
        byId("print-now").hidden = true; // only the way back
        byId("print-toolbar").hidden = false;
        byId("console").hidden = false;
        document.body.setAttribute("data-ready", "true");
      }
      return;
    }
    if (!session.token) {
      return; // signed out while loading
    }
    renderDocument(statement, company);
    byId("loading").hidden = true;
    byId("print-toolbar").hidden = false;
    byId("statement-document").hidden = false;
    byId("console").hidden = false;
    document.body.setAttribute("data-ready", "true");
  }

  async function downloadCsv(event, range) {
    event.preventDefault();
    const status = byId("csv-status");
    const name = `usage-${isoDay(range.from)}-to-${isoDay(new Date(range.to.getTime() - DAY_MS))}.csv`;
    status.textContent = "Preparing the CSV…";
    try {
      const response = await api("/api/billing/usage.csv", { from: rfc3339(range.from), to: rfc3339(range.to) }, "text/csv");
      const address = URL.createObjectURL(await response.blob());
      const save = document.createElement("a");
      save.href = address;
      save.download = name;
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(address), 60000);
      status.textContent = `Saved ${name}.`;
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        status.textContent = `The CSV could not be downloaded: ${reason(error)}`;
      }
    }
  }

  // ---- the page ------------------------------------------------------------------------------

  async function start() {
    const token = takeToken();
    if (!token) {
      signOut(
        "Open this page with your billing link",
        "The billing console needs the link you were given, the one that ends in #token=… . " +
          "Ask your administrator for one.",
      );
      return;
    }
    const claims = claimsOf(token);
    if (!claims) {
      signOut("This link is not valid", "Ask for a new billing link and open it again.");
      return;
    }
    const expiresAt = Number(claims.exp) * 1000;
    if (!Number.isFinite(expiresAt) || expiresAt <= Date.now()) {
      expired();
      return;
    }
    session.token = token;
    setTimeout(expired, Math.min(expiresAt - Date.now(), 2 ** 31 - 1));
    byId("company").textContent = claims.company_id ? `Company ${claims.company_id}` : "";
    const view = requestedView();
    if (view.print && view.period) {
      await startPrintView(view.period, claims.company_id ? String(claims.company_id) : "");
      return;
    }

    const now = new Date();
    const range = chartRange(now);
    const month = monthRange(now);
    const thisPeriod = periodOf(now);
    const link = byId("csv-download");
    const query = new URLSearchParams({ from: rfc3339(range.from), to: rfc3339(range.to) });
    link.href = `/api/billing/usage.csv?${query}`;
    link.addEventListener("click", (event) => downloadCsv(event, range));
    byId("range-label").textContent =
      `${isoDay(range.from)} to ${isoDay(new Date(range.to.getTime() - DAY_MS))} (UTC)`;
    byId("period-note").textContent = `${monthName(thisPeriod)} so far`;
    monthChoices(now, view.period);

    const summaryPage = (cursor) => getJson("/api/billing/summary", { limit: PAGE_SIZE, cursor });
    const draftsPage = (abandoned) => (cursor) =>
      getJson("/api/billing/drafts", { abandoned, limit: PAGE_SIZE, cursor });
    const previousMonth = periodOf(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)));

    const grantsPage = (cursor) => getJson("/api/billing/credits", { limit: PAGE_SIZE, cursor });
    const creditsAnswer = grantsPage(null);
    // The first grants known before the entries are drawn, so entries name their grants.
    const grantsKnown = creditsAnswer.then(rememberGrants, () => null);
    const picker = byId("statement-period");
    picker.addEventListener("change", () => showCreditEntries(picker.value, grantsKnown));

    const [summary, budget, daily, open, abandoned, credits] = await Promise.allSettled([
      summaryPage(null),
      getJson("/api/billing/budget"),
      // Days, both included.
      getJson("/api/billing/usage/daily", {
        from: isoDay(range.from),
        to: isoDay(new Date(range.to.getTime() - DAY_MS)),
      }),
      draftsPage(false)(null),
      draftsPage(true)(null),
      creditsAnswer,
      showStatement(view.period ?? previousMonth),
      showCreditEntries(view.period ?? previousMonth, grantsKnown),
    ]);
    if (!session.token) {
      return; // signed out while loading: the notice says why
    }

    if (summary.status === "fulfilled") {
      renderSummaryFigures(summary.value);
      paged(byId("jobs-pager"), summaryPage, renderJobs).first(summary.value);
    } else {
      markUnavailable(byId("drafts-waiting"), "Drafts", summary.reason);
      fill(byId("jobs-table"), [], `Jobs unavailable: ${reason(summary.reason)}`);
    }

    if (budget.status === "fulfilled") {
      renderBudget(budget.value);
      showMoney(byId("period-spend"), budget.value.spent, budget.value.currency);
      if (budget.value.period) {
        byId("period-note").textContent = `${monthName(budget.value.period)} so far`;
      }
    } else {
      markUnavailable(byId("budget-remaining"), "Budget", budget.reason);
      byId("budget-note").textContent = `The budget is ${reason(budget.reason)}.`;
      try {
        // No budget API: this month's spend from the summary of the month instead.
        const monthly = await getJson("/api/billing/summary", {
          from: rfc3339(month.from), to: rfc3339(month.to), limit: 1,
        });
        showMoney(byId("period-spend"), monthly.totals.cost, monthly.currency);
      } catch (error) {
        if (error instanceof SignedOut) {
          return;
        }
        markUnavailable(byId("period-spend"), "This period's spend", error);
      }
    }

    if (daily.status === "fulfilled") {
      chart.range = range;
      chart.daily = daily.value;
    } else {
      markUnavailable(byId("daily-chart"), "Daily spend", daily.reason);
    }

    if (credits.status === "fulfilled") {
      renderCredits(credits.value);
      paged(byId("credit-grants-pager"), grantsPage, renderGrants).first(credits.value);
    } else {
      creditsUnavailable(credits.reason);
    }

    const drafts = [
      [open, false, "drafts-open-table", "drafts-open-pager", "No draft is waiting.", "lastUsedAt"],
      [abandoned, true, "drafts-abandoned-table", "drafts-abandoned-pager", "No abandoned draft.", "firstUsedAt"],
    ];
    for (const [result, isAbandoned, table, nav, emptyText, dateField] of drafts) {
      const render = draftsRenderer(table, emptyText, dateField);
      if (result.status === "fulfilled") {
        paged(byId(nav), draftsPage(isAbandoned), render).first(result.value);
      } else if (isAbandoned && summary.status === "fulfilled" && Array.isArray(summary.value.abandonedDrafts)) {
        render({ drafts: summary.value.abandonedDrafts, nextCursor: null }); // the v1 summary's list
      } else {
        fill(byId(table), [], `Drafts unavailable: ${reason(result.reason)}`);
      }
    }

    byId("loading").hidden = true;
    byId("console").hidden = false;
    drawChart();
    new ResizeObserver(() => requestAnimationFrame(drawChart)).observe(byId("daily-chart"));
    document.body.setAttribute("data-ready", "true");
    performance.mark("console-ready"); // how long the whole page took, for the scale test
  }

  function failed(error) {
    if (error instanceof SignedOut || document.body.hasAttribute("data-ready")) {
      return;
    }
    showNotice("The billing console could not load", reason(error));
  }

  // Whatever goes wrong while loading, the page says so rather than staying blank.
  window.addEventListener("error", (event) => {
    if (event.error) {
      failed(event.error);
    }
  });
  window.addEventListener("hashchange", followNewLink);
  document.addEventListener("DOMContentLoaded", () => start().catch(failed));
})();
