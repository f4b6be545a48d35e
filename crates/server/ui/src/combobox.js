// A text input with a suggestion list (WAI-ARIA combobox pattern): arrows move, Enter or Tab
// accept, Escape closes. `suggest(text, caret)` returns {from, to, items: [{label, insert}]}
// (the range of the text an accepted item replaces) or null.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./html.js";

let uid = 0;

export function Combobox({ id, label, value, onInput, suggest, placeholder, describedBy }) {
  const [list, setList] = useState(null); // {from, to, items}
  const [active, setActive] = useState(0);
  const input = useRef(null);
  const seq = useRef(0);
  const listId = useRef(`cb-${++uid}`).current;

  const refresh = async (text, caret) => {
    const n = ++seq.current;
    let s = null;
    try {
      s = await suggest(text, caret);
    } catch {
      s = null;
    }
    if (n !== seq.current) return; // a later keystroke asked again
    setActive(0);
    setList(s && s.items.length ? s : null);
  };

  const accept = (item) => {
    const v = value.slice(0, list.from) + item.insert + value.slice(list.to);
    const caret = list.from + item.insert.length;
    onInput(v);
    setList(null);
    requestAnimationFrame(() => {
      if (!input.current) return;
      input.current.focus();
      input.current.setSelectionRange(caret, caret);
      refresh(v, caret);
    });
  };

  const onKeyDown = (e) => {
    if (!list) {
      if (e.key === "ArrowDown") {
        refresh(value, e.currentTarget.selectionStart);
        e.preventDefault();
      }
      return;
    }
    if (e.key === "ArrowDown") {
      setActive((active + 1) % list.items.length);
      e.preventDefault();
    } else if (e.key === "ArrowUp") {
      setActive((active - 1 + list.items.length) % list.items.length);
      e.preventDefault();
    } else if (e.key === "Enter" || e.key === "Tab") {
      accept(list.items[active]);
      e.preventDefault();
    } else if (e.key === "Escape") {
      setList(null);
      e.preventDefault();
    }
  };

  useEffect(() => () => (seq.current = -1), []);

  return html`<div class="combo">
    <label for=${id}>${label}</label>
    <input
      id=${id}
      ref=${input}
      type="text"
      role="combobox"
      autocomplete="off"
      spellcheck="false"
      aria-autocomplete="list"
      aria-expanded=${list ? "true" : "false"}
      aria-controls=${listId}
      aria-activedescendant=${list ? `${listId}-${active}` : undefined}
      aria-describedby=${describedBy}
      placeholder=${placeholder}
      value=${value}
      onInput=${(e) => {
        onInput(e.currentTarget.value);
        refresh(e.currentTarget.value, e.currentTarget.selectionStart);
      }}
      onKeyDown=${onKeyDown}
      onBlur=${() => setTimeout(() => setList(null), 150)}
    />
    <ul id=${listId} role="listbox" class="suggestions" hidden=${!list} aria-label=${`${label} suggestions`}>
      ${list &&
      list.items.map(
        (it, i) =>
          html`<li
            id=${`${listId}-${i}`}
            role="option"
            aria-selected=${i === active ? "true" : "false"}
            onMouseDown=${(e) => {
              e.preventDefault();
              accept(it);
            }}
          >
            ${it.label}
          </li>`,
      )}
    </ul>
  </div>`;
}
