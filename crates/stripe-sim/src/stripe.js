/* stripe-sim's stand-in for Stripe.js v3: Stripe(), elements().create('card') and
 * confirmCardPayment, speaking Stripe.js's wire protocol to the simulator that served this
 * file. The card Element is plain inputs in the page (no iframe):
 *   input[name=cardnumber]  input[name=exp-date]  input[name=cvc]  input[name=postal]
 * Nothing here is Stripe's code. */
(function () {
  'use strict';

  // Where the API is: wherever this script came from (<base>/js.stripe.com/v3/).
  var script =
    document.currentScript || document.querySelector('script[src*="/js.stripe.com/v3"]');
  var API_BASE = (function () {
    if (!script || !script.src) return 'https://api.stripe.com';
    var src = new URL(script.src, document.baseURI);
    var at = src.pathname.indexOf('/js.stripe.com/v3');
    return src.origin + (at > 0 ? src.pathname.slice(0, at) : '');
  })();

  function IntegrationError(message) {
    var e = new Error(message);
    e.name = 'IntegrationError';
    return e;
  }

  function digits(s) {
    return String(s || '').replace(/\D/g, '');
  }

  function luhn(number) {
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var d = number.charCodeAt(number.length - 1 - i) - 48;
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function brand(number) {
    if (/^4/.test(number)) return 'visa';
    if (/^(5[1-5]|2[2-7])/.test(number)) return 'mastercard';
    if (/^3[47]/.test(number)) return 'amex';
    if (/^(6011|65|64[4-9])/.test(number)) return 'discover';
    if (/^3(0[0-5]|[689])/.test(number)) return 'diners';
    if (/^35/.test(number)) return 'jcb';
    if (/^62/.test(number)) return 'unionpay';
    return 'unknown';
  }

  function numberLength(b) {
    return b === 'amex' ? 15 : b === 'diners' ? 14 : 16;
  }

  // Formats as the user types, keeping the caret after the same digit.
  function reformat(input, format) {
    var value = input.value;
    var caret = input.selectionStart == null ? value.length : input.selectionStart;
    var before = digits(value.slice(0, caret)).length;
    var formatted = format(digits(value));
    if (formatted === value) return;
    input.value = formatted;
    var pos = 0;
    for (var seen = 0; pos < formatted.length && seen < before; pos++) {
      if (/\d/.test(formatted[pos])) seen++;
    }
    if (caret >= value.length) pos = formatted.length;
    try {
      input.setSelectionRange(pos, pos);
    } catch (e) {
      /* not focusable now */
    }
  }

  function formatNumber(d) {
    d = d.slice(0, 19);
    var groups = brand(d) === 'amex' ? [4, 6, 5] : [4, 4, 4, 4, 3];
    var out = [];
    var i = 0;
    for (var g = 0; g < groups.length && i < d.length; g++) {
      out.push(d.slice(i, i + groups[g]));
      i += groups[g];
    }
    return out.join(' ');
  }

  function formatExpiry(d) {
    if (/^[2-9]/.test(d)) d = '0' + d;
    d = d.slice(0, 4);
    return d.length > 2 ? d.slice(0, 2) + ' / ' + d.slice(2) : d;
  }

  // What the card fields hold, and Stripe.js's validation_error for the first incomplete or
  // invalid one (https://docs.stripe.com/error-codes).
  function cardState(fields) {
    var number = digits(fields.cardnumber.value);
    var b = brand(number);
    var exp = digits(fields['exp-date'].value);
    var cvc = digits(fields.cvc.value);
    var postal = fields.postal.value.trim();
    var month = parseInt(exp.slice(0, 2), 10);
    var year = 2000 + parseInt(exp.slice(2, 4), 10);
    var now = new Date();
    var error = null;
    function fail(code, message) {
      if (!error) error = { type: 'validation_error', code: code, message: message };
    }
    if (number.length < numberLength(b)) fail('incomplete_number', 'Your card number is incomplete.');
    else if (!luhn(number)) fail('invalid_number', 'Your card number is invalid.');
    if (exp.length < 4) fail('incomplete_expiry', "Your card's expiration date is incomplete.");
    else if (month < 1 || month > 12)
      fail('invalid_expiry_month', "Your card's expiration date is invalid.");
    else if (year < now.getFullYear())
      fail('invalid_expiry_year_past', "Your card's expiration year is in the past.");
    else if (year === now.getFullYear() && month < now.getMonth() + 1)
      fail('invalid_expiry_month_past', "Your card's expiration date is in the past.");
    if (cvc.length < (b === 'amex' ? 4 : 3))
      fail('incomplete_cvc', "Your card's security code is incomplete.");
    return {
      number: number,
      brand: b,
      exp_month: exp.slice(0, 2),
      exp_year: exp.slice(2, 4),
      cvc: cvc,
      postal: postal,
      empty: !number && !exp && !cvc && !postal,
      complete: !error,
      error: error,
    };
  }

  var FIELDS = [
    // name, placeholder, aria-label, autocomplete, inputmode, maxlength, formatter
    ['cardnumber', 'Card number', 'Credit or debit card number', 'cc-number', 'numeric', 23, formatNumber],
    ['exp-date', 'MM / YY', 'Credit or debit card expiration date', 'cc-exp', 'numeric', 7, formatExpiry],
    ['cvc', 'CVC', 'Credit or debit card CVC/CVV', 'cc-csc', 'numeric', 4, function (d) { return d.slice(0, 4); }],
    ['postal', 'ZIP', 'ZIP', 'billing postal-code', 'text', 10, null],
  ];

  function CardElement(group) {
    this._group = group;
    this._handlers = {};
    this._mountPoint = null;
    this._root = null;
    this._fields = null;
    this._destroyed = false;
  }

  CardElement.prototype._emit = function (event, payload) {
    var handlers = (this._handlers[event] || []).slice();
    for (var i = 0; i < handlers.length; i++) handlers[i](payload);
  };

  CardElement.prototype._classes = function (focused) {
    var mp = this._mountPoint;
    if (!mp) return;
    var s = cardState(this._fields);
    if (focused !== undefined) mp.classList.toggle('StripeElement--focus', focused);
    mp.classList.toggle('StripeElement--empty', s.empty);
    mp.classList.toggle('StripeElement--complete', s.complete);
    return s;
  };

  CardElement.prototype.mount = function (target) {
    if (this._destroyed) throw IntegrationError('This Element has already been destroyed. Please create a new one.');
    var node = typeof target === 'string' ? document.querySelector(target) : target;
    if (!node || node.nodeType !== 1) {
      throw IntegrationError(
        typeof target === 'string'
          ? 'The selector you specified (' + target + ') applies to no DOM elements that are currently on the page.\n' +
              'Make sure the element exists on the page before calling mount().'
          : 'Invalid DOM element. Make sure to call mount() with a valid DOM element or selector.'
      );
    }
    if (this._mountPoint) this.unmount();
    var self = this;
    var root = document.createElement('div');
    root.className = '__PrivateStripeElement';
    root.setAttribute('data-stripe-sim', 'card');
    var fields = {};
    FIELDS.forEach(function (f) {
      var input = document.createElement('input');
      input.type = 'text';
      input.name = f[0];
      input.placeholder = f[1];
      input.setAttribute('aria-label', f[2]);
      input.setAttribute('autocomplete', f[3]);
      input.setAttribute('inputmode', f[4]);
      input.setAttribute('autocorrect', 'off');
      input.setAttribute('spellcheck', 'false');
      input.maxLength = f[5];
      input.className = 'InputElement';
      input.addEventListener('input', function () {
        if (f[6]) reformat(input, f[6]);
        var s = self._classes();
        self._emit('change', {
          elementType: 'card',
          empty: s.empty,
          complete: s.complete,
          error: undefined,
          brand: s.brand,
          value: { postalCode: s.postal },
        });
      });
      input.addEventListener('focus', function () {
        self._classes(true);
        self._emit('focus', { elementType: 'card' });
      });
      input.addEventListener('blur', function () {
        self._classes(false);
        self._emit('blur', { elementType: 'card' });
      });
      fields[f[0]] = input;
      root.appendChild(input);
    });
    node.appendChild(root);
    node.classList.add('StripeElement');
    this._mountPoint = node;
    this._root = root;
    this._fields = fields;
    this._classes(false);
    setTimeout(function () {
      self._emit('ready', { elementType: 'card' });
    }, 0);
    return this;
  };

  CardElement.prototype.unmount = function () {
    if (this._root && this._root.parentNode) this._root.parentNode.removeChild(this._root);
    if (this._mountPoint) {
      this._mountPoint.classList.remove(
        'StripeElement', 'StripeElement--empty', 'StripeElement--focus', 'StripeElement--complete'
      );
    }
    this._mountPoint = null;
    this._root = null;
    return this;
  };

  CardElement.prototype.destroy = function () {
    this.unmount();
    this._destroyed = true;
    this._fields = null;
    this._handlers = {};
    if (this._group._card === this) this._group._card = null;
    return this;
  };

  CardElement.prototype.on = function (event, handler) {
    (this._handlers[event] = this._handlers[event] || []).push(handler);
    return this;
  };

  CardElement.prototype.off = function (event, handler) {
    var list = this._handlers[event] || [];
    this._handlers[event] = handler ? list.filter(function (h) { return h !== handler; }) : [];
    return this;
  };

  CardElement.prototype.once = function (event, handler) {
    var self = this;
    function once(payload) {
      self.off(event, once);
      handler(payload);
    }
    return this.on(event, once);
  };

  CardElement.prototype.update = function () {
    return this;
  };

  CardElement.prototype.focus = function () {
    if (this._fields) this._fields.cardnumber.focus();
    return this;
  };

  CardElement.prototype.blur = function () {
    if (this._root && this._root.contains(document.activeElement)) document.activeElement.blur();
    return this;
  };

  CardElement.prototype.clear = function () {
    if (!this._fields) return this;
    for (var name in this._fields) this._fields[name].value = '';
    this._classes();
    return this;
  };

  function Elements(stripe) {
    this._stripe = stripe;
    this._card = null;
  }

  Elements.prototype.create = function (type, options) {
    if (type !== 'card') {
      throw IntegrationError('stripe-sim: only the card Element is simulated, not ' + JSON.stringify(type) + '.');
    }
    if (this._card) throw IntegrationError('Can only create one Element of type card.');
    this._card = new CardElement(this);
    return this._card;
  };

  Elements.prototype.getElement = function (type) {
    return type === 'card' ? this._card : null;
  };

  // Stripe's form encoding: nested objects as a[b][c]=v.
  function encode(pairs, prefix, value) {
    if (value === undefined || value === null) return;
    if (typeof value === 'object') {
      for (var k in value) {
        if (Object.prototype.hasOwnProperty.call(value, k)) encode(pairs, prefix + '[' + k + ']', value[k]);
      }
      return;
    }
    pairs.push(encodeURIComponent(prefix) + '=' + encodeURIComponent(String(value)));
  }

  function Stripe(key, options) {
    if (!(this instanceof Stripe)) return new Stripe(key, options);
    if (typeof key !== 'string') {
      throw IntegrationError('Invalid value for Stripe(): apiKey should be a string. You specified: ' + typeof key + '.');
    }
    if (/^(sk|rk)_/.test(key)) {
      throw IntegrationError('You should not use your secret key with Stripe.js.\nPlease pass a publishable key instead.');
    }
    if (!/^pk_(test|live)_/.test(key)) {
      throw IntegrationError('Invalid value for Stripe(): apiKey should be a publishable key (pk_test_… or pk_live_…).');
    }
    this._key = key;
    this._stripeAccount = (options && options.stripeAccount) || null;
  }

  Stripe.version = 3;
  Stripe.simulated = true;

  Stripe.prototype.elements = function () {
    return new Elements(this);
  };

  // POST <api>/v1/<path> as Stripe.js does: a form body with the key (and the connected
  // account), no custom header, so no preflight. Resolves with the JSON answer; API errors
  // resolve as { error }, never reject.
  Stripe.prototype._post = function (path, pairs, field) {
    pairs.push('key=' + encodeURIComponent(this._key));
    if (this._stripeAccount) pairs.push('_stripe_account=' + encodeURIComponent(this._stripeAccount));
    return fetch(API_BASE + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: pairs.join('&'),
    }).then(
      function (response) {
        return response.json().then(
          function (body) {
            if (response.ok) {
              var result = {};
              result[field] = body;
              return result;
            }
            return { error: (body && body.error) || { type: 'api_error', message: 'An unknown error occurred.' } };
          },
          function () {
            return { error: { type: 'api_error', message: 'An unknown error occurred.' } };
          }
        );
      },
      function () {
        return {
          error: {
            type: 'api_connection_error',
            message: 'An error occurred with our connection to Stripe.',
          },
        };
      }
    );
  };

  Stripe.prototype.confirmCardPayment = function (clientSecret, data, options) {
    var match = /^(pi_[A-Za-z0-9]+)_secret_[A-Za-z0-9]+$/.exec(String(clientSecret || ''));
    if (!match) {
      return Promise.reject(
        IntegrationError(
          'Invalid value for confirmCardPayment intent secret: value should be a client secret of the form ${id}_secret_${secret}. You specified: ' +
            clientSecret + '.'
        )
      );
    }
    var pairs = [];
    encode(pairs, 'client_secret', clientSecret);
    data = data || {};
    var pm = data.payment_method;
    if (typeof pm === 'string') {
      encode(pairs, 'payment_method', pm);
    } else if (pm && pm.card) {
      var card = pm.card;
      if (!(card instanceof CardElement) || !card._fields || !card._mountPoint) {
        return Promise.reject(
          IntegrationError(
            'We could not retrieve data from the specified Element.\n' +
              'Please make sure the Element you are attempting to use is still mounted.'
          )
        );
      }
      var s = cardState(card._fields);
      if (s.error) {
        card._mountPoint.classList.add('StripeElement--invalid');
        return Promise.resolve({ error: s.error });
      }
      card._mountPoint.classList.remove('StripeElement--invalid');
      encode(pairs, 'payment_method_data[type]', 'card');
      encode(pairs, 'payment_method_data[card][number]', s.number);
      encode(pairs, 'payment_method_data[card][exp_month]', s.exp_month);
      encode(pairs, 'payment_method_data[card][exp_year]', s.exp_year);
      encode(pairs, 'payment_method_data[card][cvc]', s.cvc);
      var billing = pm.billing_details || {};
      var address = billing.address || {};
      var postal = address.postal_code || s.postal;
      for (var k in billing) {
        if (k !== 'address') encode(pairs, 'payment_method_data[billing_details][' + k + ']', billing[k]);
      }
      for (var a in address) {
        if (a !== 'postal_code') encode(pairs, 'payment_method_data[billing_details][address][' + a + ']', address[a]);
      }
      if (postal) encode(pairs, 'payment_method_data[billing_details][address][postal_code]', postal);
    }
    for (var name in data) {
      if (name !== 'payment_method' && Object.prototype.hasOwnProperty.call(data, name)) {
        encode(pairs, name, data[name]);
      }
    }
    return this._post('/v1/payment_intents/' + encodeURIComponent(match[1]) + '/confirm', pairs, 'paymentIntent');
  };

  window.Stripe = Stripe;
})();
