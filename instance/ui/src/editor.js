// The flow page's YAML editor: CodeMirror 6 over the page's <textarea>
// (the form still posts the textarea, so the page works without this
// script). "Validate" asks the server and marks each problem at its line
// and column before anything is saved.
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { yaml } from "@codemirror/lang-yaml";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

function offsetOf(doc, line, column) {
  const n = Math.min(Math.max(line, 1), doc.lines);
  const l = doc.line(n);
  return Math.min(l.from + Math.max(column - 1, 0), l.to);
}

function showProblems(view, list, problems) {
  const doc = view.state.doc;
  const diagnostics = problems.map((p) => {
    const from = offsetOf(doc, p.line || 1, p.column || 1);
    const to = Math.max(from, doc.lineAt(from).to);
    return { from, to, severity: "error", message: p.message };
  });
  view.dispatch(setDiagnostics(view.state, diagnostics));
  list.replaceChildren();
  for (const p of problems) {
    const item = document.createElement("li");
    if (p.line) {
      // The place, as a button that puts the cursor there.
      const where = document.createElement("button");
      where.type = "button";
      where.className = "where";
      where.textContent = p.line + ":" + p.column;
      where.setAttribute("aria-label", "Go to line " + p.line + ", column " + p.column);
      where.addEventListener("click", () => {
        const at = offsetOf(view.state.doc, p.line, p.column);
        view.dispatch({ selection: { anchor: at }, scrollIntoView: true });
        view.focus();
      });
      item.append(where, " ");
    }
    item.append(p.message);
    list.appendChild(item);
  }
  list.parentElement.hidden = problems.length === 0;
}

// The page's Content-Security-Policy allows no <style> element, so the
// editor lives in a shadow root, where CodeMirror's styles are adopted
// stylesheets (built by script, which the policy allows).
const theme = EditorView.theme({
  "&": { border: "1px solid #9aa3b5", borderRadius: "4px", background: "#fff", maxHeight: "70vh", fontSize: "0.9rem" },
  "&.cm-focused": { outline: "3px solid #f0b429", outlineOffset: "1px" },
  ".cm-scroller": { overflow: "auto", fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" },
  ".cm-content, .cm-gutter": { minHeight: "24rem" },
  // The policy allows no data: images either: CodeMirror's squiggle and
  // gutter markers are drawn with plain CSS instead.
  ".cm-lintRange-error": { backgroundImage: "none", textDecoration: "underline wavy #b42318", textDecorationSkipInk: "none" },
  ".cm-lint-marker": { content: "normal", display: "inline-block", width: "0.7em", height: "0.7em", borderRadius: "50%", margin: "0.3em 0.15em 0" },
  ".cm-lint-marker-error": { background: "#b42318" },
});

function mount(textarea) {
  const form = textarea.form;
  const host = document.createElement("div");
  host.className = "cm-host";
  const shadow = host.attachShadow({ mode: "open" });
  const view = new EditorView({
    root: shadow,
    parent: shadow,
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        lineNumbers(), history(), drawSelection(), indentOnInput(), bracketMatching(),
        highlightActiveLine(), lintGutter(), yaml(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
        EditorView.lineWrapping, theme,
        EditorView.contentAttributes.of({ "aria-label": textarea.getAttribute("aria-label") || "Flow YAML" }),
      ],
    }),
  });
  textarea.hidden = true;
  textarea.insertAdjacentElement("afterend", host);
  const label = form.querySelector('label[for="' + textarea.id + '"]');
  if (label) label.addEventListener("click", () => view.focus());
  form.addEventListener("submit", () => { textarea.value = view.state.doc.toString(); });
  // For scripted browsers (tests): read and replace the text as typing would.
  host.atollEditor = {
    text: () => view.state.doc.toString(),
    setText: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
  };
  const list = document.getElementById("problems-list");
  const button = form.querySelector("button[data-validate]");
  if (button && list) {
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      const response = await fetch(button.dataset.validate, {
        method: "POST",
        headers: { "Content-Type": "text/plain", "X-CSRF-Token": csrfToken() },
        body: view.state.doc.toString(),
        credentials: "same-origin",
      });
      if (!response.ok) { showProblems(view, list, [{ message: "validation failed: HTTP " + response.status }]); return; }
      const problems = await response.json();
      showProblems(view, list, problems);
      const status = document.getElementById("validate-status");
      if (status) status.textContent = problems.length === 0 ? "Valid." : problems.length + " problem(s).";
    });
  }
  const initial = list ? Array.from(list.querySelectorAll("li[data-line]")) : [];
  if (initial.length) {
    showProblems(view, list, initial.map((li) => ({
      line: Number(li.dataset.line), column: Number(li.dataset.column), message: li.dataset.message,
    })));
  }
}

document.querySelectorAll("textarea[data-editor]").forEach(mount);
