// Alert page: start the clip where this violation begins (several events can share one clip).
"use strict";

(function () {
  var video = document.querySelector("video[data-offset]");
  if (!video) return;
  var offset = parseFloat(video.getAttribute("data-offset")) || 0;
  function seek() {
    if (offset > 0 && video.currentTime < offset - 0.05 && offset < (video.duration || Infinity)) {
      video.currentTime = offset;
    }
  }
  // The #t= fragment already asks for the offset; this covers browsers that ignore it.
  video.addEventListener("loadedmetadata", seek, { once: true });
})();
