// The costs page's spend-by-day chart (Chart.js, vendored in static/vendor/chartjs).
(function () {
  const data = document.getElementById("chart-data");
  const canvas = document.getElementById("spend-chart");
  if (!data || !canvas || !window.Chart) return;
  const { labels, values } = JSON.parse(data.textContent);
  new window.Chart(canvas, {
    type: "bar",
    data: { labels, datasets: [{ label: "Spend (USD)", data: values, backgroundColor: "#2f5bd3" }] },
    options: {
      maintainAspectRatio: false,
      animation: false,
      plugins: { legend: { display: false },
        tooltip: { callbacks: { label: (c) => "$" + c.parsed.y.toFixed(4) } } },
      scales: { y: { beginAtZero: true, ticks: { callback: (v) => "$" + v } } },
    },
  });
})();
