// Client-side navigation (shared by the pages; the app re-reads the location on tv:navigate).
export function navigate(to) {
  if (to === location.pathname + location.search) return;
  history.pushState(null, "", to);
  window.dispatchEvent(new Event("tv:navigate"));
}
