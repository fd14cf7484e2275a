// Shows each <time datetime> in the viewer's own time zone; the page as served says UTC, and
// keeps saying it in the element's title.
(function () {
  var times = document.querySelectorAll('time[datetime]');
  for (var i = 0; i < times.length; i++) {
    var at = new Date(times[i].getAttribute('datetime'));
    if (!isNaN(at.getTime())) {
      times[i].textContent = at.toLocaleString(undefined, {
        year: 'numeric', month: 'short', day: 'numeric',
        hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short'
      });
    }
  }
})();
