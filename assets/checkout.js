// The hosted payment page: Stripe.js with the merchant's publishable key (and the connected
// account for a direct charge), a card Element, and confirmCardPayment. Configuration comes from
// data attributes, so the page needs no inline script and its CSP can forbid all of it.
(function () {
  var root = document.getElementById('checkout');
  var options = root.dataset.stripeAccount ? { stripeAccount: root.dataset.stripeAccount } : {};
  var stripe = Stripe(root.dataset.publishableKey, options);
  var card = stripe.elements().create('card');
  card.mount('#card-element');
  var form = document.getElementById('payment-form');
  var button = document.getElementById('pay');
  var message = document.getElementById('payment-message');
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    button.disabled = true;
    message.textContent = '';
    stripe
      .confirmCardPayment(root.dataset.clientSecret, { payment_method: { card: card } })
      .then(function (result) {
        if (result.error) {
          // Only Stripe's webhook (or a re-check) marks the order; this is what the customer sees.
          message.textContent = result.error.message || 'The payment did not go through.';
          button.disabled = false;
        } else {
          window.location.href = root.dataset.resultUrl;
        }
      });
  });
})();
