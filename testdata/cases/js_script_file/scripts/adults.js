// Keeps customers under 40.
function process(context) {
  return context.input.current().age < 40;
}
